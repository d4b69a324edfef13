"""The governed HTTP edge: CloudEvents and native webhooks, authenticated, authorised, limited."""
