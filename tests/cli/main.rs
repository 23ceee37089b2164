//! The real `render-deploy` binary, run as a user runs it: commands, exit codes, output, and
//! `serve`/`dev` end to end against a real PostgreSQL over loopback.

#[path = "../support/mod.rs"]
mod support;

mod blocked_stdout;
mod blueprint_cli;
mod check_env;
mod cli_sign_verify;
mod deploy;
mod dev_killed;
mod events;
mod hostile;
mod service;
