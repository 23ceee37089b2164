//! Rehearsing a Render zero-downtime deploy on this machine.
