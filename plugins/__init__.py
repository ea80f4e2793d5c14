"""SakaiBot's built-in plugins: model backends and prompt enhancers."""
