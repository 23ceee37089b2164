//! `render-deploy serve` and `dev` (contract §2, §4, §6).

use std::process::ExitCode;

pub fn serve() -> ExitCode {
    super::not_yet_available("serve")
}

pub fn dev() -> ExitCode {
    super::not_yet_available("dev")
}
