"""The plugin host: loading plugins, collecting registrations, calling hooks, the core's defaults."""
