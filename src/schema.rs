//! Variable rules as data (built-in or a user's TOML file) and the engine that applies them.
