//! Blueprints: checking and writing Render's `render.yaml`.
