"""ada-unet plugin (being implemented)."""
