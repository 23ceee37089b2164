//! `render-deploy rehearse` end to end: the real binary rehearsing the fixture service
//! (`examples/rehearse_fixture.rs`) and this service's own `dev`, and its HTML report opened in
//! headless Chromium.

#[path = "../support/mod.rs"]
mod support;

mod event_streams;
mod large_bodies;
mod rehearsal;
mod report;
mod versions;
