"""DocuSign: Connect webhook adapter (inbound) and client."""
