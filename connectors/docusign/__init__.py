"""DocuSign: Connect webhook adapter (inbound), client and simulator."""
