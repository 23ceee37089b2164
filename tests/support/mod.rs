//! Shared by the four integration-test binaries (`inprocess`, `postgres`, `cli`, `rehearse`):
//! one canary set, one valid environment, one request helper, the real binary as a process, and
//! the stand-ins for what is outside (Render's deploy hook and API) or built apart (the rehearsal fixture).
#![allow(dead_code, unused_imports)]

pub mod canary;
pub mod env;
pub mod fake_hook;
pub mod fake_render;
pub mod fixture;
pub mod hostile;
pub mod http;
pub mod leftovers;
pub mod process;
pub mod signing;

pub use http::*;
pub use process::*;
pub use signing::*;

/// A free TCP port on loopback (bound, then released: the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The retry policy of the clients that talk to a stand-in (Render's deploy hook or API): the
/// same attempts and caps as in production, in milliseconds instead of seconds.
pub fn fast_retry_policy() -> render_deploy::render_api::deploy_hook::RetryPolicy {
    use std::time::Duration;
    render_deploy::render_api::deploy_hook::RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
    }
}

/// A prerequisite of a test is not installed. Outside CI the test is skipped, saying so on
/// stderr; when `CI` is set it fails instead, so that a green CI run means every test ran.
pub fn prerequisite_missing(what: &str, install: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing and CI is set, so this test may not skip ({install})");
    }
    eprintln!("skipped: {what} is missing ({install})");
}
