"""Network frontends: protocol adapters over the Server (no model logic here)."""
