"""SharePoint through Microsoft Graph: change-notification adapter (inbound), client and simulator."""
