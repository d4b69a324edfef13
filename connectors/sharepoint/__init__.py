"""SharePoint through Microsoft Graph: change-notification adapter (inbound) and client."""
