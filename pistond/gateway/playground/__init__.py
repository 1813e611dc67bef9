"""The playground web page of ``pistond-gateway``: page, assets, examples, negotiation."""
