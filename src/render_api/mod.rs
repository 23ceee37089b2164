//! Everything that calls Render: the deploy hook, the REST API, and the deploy built on them.
//!
//! - [`retry`]: the one HTTP client set-up and retry policy (jittered back-off, 429 honoured).
//! - [`deploy_hook`]: the deploy hook URL (`trigger`, `deploy_requested` deliveries).
//! - [`credentials`]: the API key as a secret, the API's base URL (https, or loopback).
//! - [`client`]: the REST API calls.
//! - [`types`]: the deploy and service objects, and typed deploy statuses.
//! - [`create`]: one deploy (or rollback) per call, whatever the network does.
//! - [`follow`]: polling a deploy to its end.
//! - [`smoke`]: the smoke test of a live deploy.
//! - [`deploy`]: `render-deploy deploy` as a whole (§9), reported to an observer.

pub mod client;
pub mod create;
pub mod credentials;
pub mod deploy;
pub mod deploy_hook;
pub mod follow;
pub mod retry;
pub mod smoke;
pub mod types;

pub use client::{ApiBase, ApiError, ApiKey, RenderApi};
pub use deploy_hook::{DeployHookClient, DeployHookUrl, TriggerError};
pub use retry::RetryPolicy;
pub use types::{Deploy, DeployStatus};
