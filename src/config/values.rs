//! The one typed hand-off from the schema engine: each variable the code reads, read once,
//! by its type.
//!
//! The schema has already checked every value against its rule and parsed it into a
//! [`Parsed`]; here each variable is taken out by the type the code wants ([`FromParsed`]:
//! ports, addresses, URLs, secrets, numbers; `FromStr` enums through [`Values::word`];
//! durations through [`Values::secs`] and [`Values::millis`]). A value of an unexpected shape
//! is not silently replaced by a fallback: it is a disagreement between the built-in schema and
//! the code, reported as a problem, and a unit test fails on any such disagreement.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use secrecy::SecretString;

use super::settings::{
    AppEnv, Defaults, DeploySettings, HealthSettings, HookSettings, LogFormat, MaxConnections,
    PoolMax, PoolSettings, RECHECK_AFTER, ServeOptions,
};
use super::{Config, ConfigErrors, RenderInfo, Validation};
use crate::database_url::DatabaseUrl;
use crate::render_api::credentials::{ApiBase, ApiKey};
use crate::render_api::deploy_hook::DeployHookUrl;
use crate::schema::{Env, Mode, Parsed, Problem, ProblemKind, Report, Schema};
use crate::signature::WebhookSecret;

/// A type a parsed value can be handed over as.
pub(crate) trait FromParsed: Sized {
    /// What the code expects, for the disagreement message.
    const WANTS: &'static str;
    /// The value, or `None` when the schema parsed it as something else.
    fn from_parsed(parsed: Parsed) -> Option<Self>;
}

macro_rules! from_parsed {
    ($ty:ty, $wants:literal, $($pat:pat => $out:expr),+ $(,)?) => {
        impl FromParsed for $ty {
            const WANTS: &'static str = $wants;
            fn from_parsed(parsed: Parsed) -> Option<Self> {
                match parsed {
                    $($pat => $out,)+
                    _ => None,
                }
            }
        }
    };
}

from_parsed!(String, "text", Parsed::Text(t) => Some(t));
// A schema that marks the variable non-secret still gets it held as a secret here.
from_parsed!(SecretString, "a secret", Parsed::Secret(s) => Some(s), Parsed::Text(t) => Some(SecretString::from(t)));
from_parsed!(u16, "a port", Parsed::Port(p) => Some(p));
from_parsed!(IpAddr, "an IP address", Parsed::Ip(ip) => Some(ip));
from_parsed!(bool, "a boolean", Parsed::Bool(b) => Some(b));
from_parsed!(u64, "a non-negative integer", Parsed::Integer(n) => u64::try_from(n).ok());
from_parsed!(u32, "a non-negative integer", Parsed::Integer(n) => u32::try_from(n).ok());
from_parsed!(usize, "a non-negative integer", Parsed::Integer(n) => usize::try_from(n).ok());
from_parsed!(DatabaseUrl, "a PostgreSQL URL", Parsed::DatabaseUrl(u) => Some(u));
from_parsed!(DeployHookUrl, "a deploy hook URL", Parsed::DeployHookUrl(u) => Some(u));
from_parsed!(WebhookSecret, "a webhook secret", Parsed::WebhookSecret(s) => Some(s));
from_parsed!(ApiBase, "a Render API URL", Parsed::RenderApiUrl(u) => Some(u));

impl FromParsed for ApiKey {
    const WANTS: &'static str = "a Render API key";
    fn from_parsed(parsed: Parsed) -> Option<Self> {
        use secrecy::ExposeSecret;
        match parsed {
            Parsed::Secret(s) => ApiKey::parse(s.expose_secret()).ok(),
            Parsed::Text(t) => ApiKey::parse(&t).ok(),
            _ => None,
        }
    }
}

impl FromParsed for PoolMax {
    const WANTS: &'static str = "auto or a pool size";
    fn from_parsed(parsed: Parsed) -> Option<Self> {
        match parsed {
            Parsed::Text(t) if t == "auto" => Some(PoolMax::Auto),
            Parsed::Integer(n) => usize::try_from(n).ok().map(PoolMax::Fixed),
            _ => None,
        }
    }
}

impl FromParsed for MaxConnections {
    const WANTS: &'static str = "auto or a number of connections";
    fn from_parsed(parsed: Parsed) -> Option<Self> {
        match parsed {
            Parsed::Text(t) if t == "auto" => Some(MaxConnections::Auto),
            Parsed::Integer(n) => usize::try_from(n).ok().map(MaxConnections::Fixed),
            _ => None,
        }
    }
}

/// A schema report, handed over variable by variable.
pub(crate) struct Values {
    report: Report,
    /// Every name the code asked for, so that a test can compare them with the schema's.
    read: Vec<&'static str>,
}

impl Values {
    pub(crate) fn new(report: Report) -> Self {
        Self {
            report,
            read: Vec::new(),
        }
    }

    /// An optional variable: `None` when unset (and without a default) or invalid (already a
    /// problem of the report).
    pub(crate) fn take<T: FromParsed>(&mut self, name: &'static str) -> Option<T> {
        self.read.push(name);
        let parsed = self.report.take(name)?;
        let value = T::from_parsed(parsed);
        if value.is_none() {
            self.disagree(name, format!("the code reads it as {}", T::WANTS));
        }
        value
    }

    /// A variable the code cannot do without: the schema must require it or give it a
    /// default. `None` when it is invalid or missing (then the report has a problem for it).
    pub(crate) fn require<T: FromParsed>(&mut self, name: &'static str) -> Option<T> {
        let value = self.take(name);
        self.needed(name, value)
    }

    /// A word of an `enum` variable, as its `FromStr` type.
    pub(crate) fn word<T: FromStr>(&mut self, name: &'static str) -> Option<T> {
        let text: String = self.take(name)?;
        let value = text.parse().ok();
        if value.is_none() {
            self.disagree(
                name,
                "one of the schema's values is not a word the code knows".into(),
            );
        }
        value
    }

    /// A required-or-defaulted word.
    pub(crate) fn require_word<T: FromStr>(&mut self, name: &'static str) -> Option<T> {
        let value = self.word(name);
        self.needed(name, value)
    }

    /// `value`, and a disagreement when it is missing without a problem that says why.
    fn needed<T>(&mut self, name: &str, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.report.problems.iter().any(|p| p.var == name) {
            self.disagree(
                name,
                "the code needs a value: the schema must require it or give a default".into(),
            );
        }
        value
    }

    /// A number of seconds.
    pub(crate) fn secs(&mut self, name: &'static str) -> Option<Duration> {
        self.require::<u64>(name).map(Duration::from_secs)
    }

    /// A number of milliseconds.
    pub(crate) fn millis(&mut self, name: &'static str) -> Option<Duration> {
        self.require::<u64>(name).map(Duration::from_millis)
    }

    fn disagree(&mut self, name: &str, why: String) {
        self.report.problems.push(Problem {
            var: name.to_owned(),
            problem: format!("the built-in schema and the code disagree ({why})"),
            kind: ProblemKind::Invalid,
        });
    }

    fn problem(&mut self, var: &str, problem: String) {
        self.report.problems.push(Problem {
            var: var.to_owned(),
            problem,
            kind: ProblemKind::Invalid,
        });
    }

    /// The `HEALTH_*` variables.
    fn health(&mut self) -> Option<HealthSettings> {
        Some(HealthSettings {
            cache_ttl: self.secs("HEALTH_CACHE_TTL")?,
            failure_ttl: self.secs("HEALTH_FAILURE_TTL")?,
            probe_timeout: self.secs("HEALTH_PROBE_TIMEOUT")?,
            db_policy: self.require_word("HEALTH_DB_POLICY")?,
        })
    }

    /// The `DB_*` variables; `cpus` from `RENDER_CPU_COUNT`.
    fn pool(&mut self, cpus: Option<u32>) -> Option<PoolSettings> {
        let max = self.require::<PoolMax>("DB_POOL_MAX");
        let min_idle = self.require::<usize>("DB_POOL_MIN_IDLE");
        // Idle connections are kept open, so more of them than the pool may hold cannot be.
        if let (Some(PoolMax::Fixed(max)), Some(min_idle)) = (max, min_idle)
            && min_idle > max
        {
            self.problem(
                "DB_POOL_MIN_IDLE",
                format!("{min_idle} is more than DB_POOL_MAX={max} (expected at most DB_POOL_MAX)"),
            );
        }
        Some(PoolSettings {
            max: max?,
            min_idle: min_idle?,
            wait_timeout: self.secs("DB_POOL_TIMEOUT")?,
            connect_timeout: self.secs("DB_CONNECT_TIMEOUT")?,
            max_lifetime: self.secs("DB_MAX_LIFETIME")?,
            instances: self.require("DB_POOL_INSTANCES")?,
            pgbouncer: self.require("DB_PGBOUNCER")?,
            cpus,
            recheck_after: RECHECK_AFTER,
        })
    }

    /// The `WEBHOOK_*` variables.
    fn hooks(&mut self) -> Option<HookSettings> {
        let max_body = self.require::<usize>("WEBHOOK_MAX_BODY");
        let max_inflight = self.require::<usize>("WEBHOOK_MAX_INFLIGHT");
        // One delivery of the largest size must fit in the budget, or none could be read.
        if let (Some(max_body), Some(max_inflight)) = (max_body, max_inflight)
            && max_inflight < max_body
        {
            self.problem(
                "WEBHOOK_MAX_INFLIGHT",
                format!(
                    "{max_inflight} is less than WEBHOOK_MAX_BODY={max_body} (expected at least \
                     WEBHOOK_MAX_BODY)"
                ),
            );
        }
        Some(HookSettings {
            tolerance: self.secs("WEBHOOK_TOLERANCE")?,
            max_body: max_body?,
            max_inflight: max_inflight?,
            replay_store: self.require_word("WEBHOOK_REPLAY_STORE")?,
        })
    }

    /// The server's timeouts.
    fn serve(&mut self) -> Option<ServeOptions> {
        Some(ServeOptions {
            shutdown_timeout: self.secs("SHUTDOWN_TIMEOUT")?,
            header_read_timeout: self.secs("HEADER_READ_TIMEOUT")?,
            linger: self.millis("SHUTDOWN_LINGER_MS")?,
            max_connections: self.require("MAX_CONNECTIONS")?,
        })
    }

    /// Render's own variables.
    fn render(&mut self) -> RenderInfo {
        RenderInfo {
            on_render: self.take("RENDER").unwrap_or(false),
            service_id: self.take("RENDER_SERVICE_ID"),
            service_name: self.take("RENDER_SERVICE_NAME"),
            instance_id: self.take("RENDER_INSTANCE_ID"),
            git_commit: self.take("RENDER_GIT_COMMIT"),
            cpu_count: self.take("RENDER_CPU_COUNT"),
            external_url: self.take("RENDER_EXTERNAL_URL"),
        }
    }

    /// What `deploy` reads (and the service's configuration carries, for `check-env`).
    fn deploy(&mut self) -> DeploySettings {
        DeploySettings {
            api_key: self.take("RENDER_API_KEY"),
            api_url: self.require("RENDER_API_URL"),
            service_id: self.take("RENDER_SERVICE_ID"),
            deploy_hook_url: self.take("RENDER_DEPLOY_HOOK_URL"),
        }
    }

    /// Every setting that has a default.
    fn defaulted(&mut self, cpus: Option<u32>) -> Option<Defaults> {
        let health = self.health();
        let pool = self.pool(cpus);
        let hooks = self.hooks();
        let serve = self.serve();
        let request_timeout = self.secs("REQUEST_TIMEOUT");
        Some(Defaults {
            health: health?,
            pool: pool?,
            hooks: hooks?,
            serve: serve?,
            request_timeout: request_timeout?,
        })
    }
}

/// The built-in schema's defaults, read once. The schema is part of the crate and a unit test
/// reads every default through this, so the `expect` cannot fire at run time.
pub(crate) static DEFAULTS: LazyLock<Defaults> =
    LazyLock::new(|| defaults().expect("the built-in schema gives every default the code reads"));

impl Default for HealthSettings {
    fn default() -> Self {
        DEFAULTS.health.clone()
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        DEFAULTS.pool.clone()
    }
}

impl Default for HookSettings {
    fn default() -> Self {
        DEFAULTS.hooks.clone()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        DEFAULTS.serve
    }
}

/// The built-in schema's defaults: what it gives for an empty environment.
pub(crate) fn defaults() -> Option<Defaults> {
    let report = Schema::builtin().check(&Env::default(), Mode::Serve);
    Values::new(report).defaulted(None)
}

/// The variables of `deploy`, from a report of the built-in schema over the whole environment;
/// only the problems of those variables are kept (a CI job has no `DATABASE_URL`).
pub(super) fn deploy(report: Report) -> (DeploySettings, Vec<Problem>) {
    let mut v = Values::new(report);
    let settings = v.deploy();
    let problems = std::mem::take(&mut v.report.problems)
        .into_iter()
        .filter(|p| DeploySettings::VARIABLES.contains(&p.var.as_str()))
        .collect();
    (settings, problems)
}

/// Turns a report of the built-in schema into a [`Config`]. The report's values are already
/// parsed; what is left are the rules that concern two variables at once.
pub(super) fn build(report: Report) -> Validation {
    let mut v = Values::new(report);
    let (validation, _) = assemble(&mut v);
    validation
}

/// [`build`], also returning the names the code read (for the agreement test).
fn assemble(v: &mut Values) -> (Validation, Vec<&'static str>) {
    let database_url = v.require::<DatabaseUrl>("DATABASE_URL");
    let host = v.require::<IpAddr>("HOST");
    let port = v.require::<u16>("PORT");
    let app_env = v.require_word::<AppEnv>("APP_ENV");
    let openai_api_key = v.take("OPENAI_API_KEY");
    let twilio_account_sid = v.take("TWILIO_ACCOUNT_SID");
    let twilio_auth_token = v.take("TWILIO_AUTH_TOKEN");
    let deploy_hook_secret = v.take("RENDER_DEPLOY_HOOK_SECRET");
    let deploy_hook_url = v.take("RENDER_DEPLOY_HOOK_URL");
    let render = v.render();
    let defaulted = v.defaulted(render.cpu_count);
    let metrics_token = v.take("METRICS_TOKEN");
    let render_api_key = v.take("RENDER_API_KEY");
    let render_api_url = v.require("RENDER_API_URL");
    let log_format = v.word::<LogFormat>("LOG_FORMAT").unwrap_or_else(|| {
        let (format, shown) = match app_env {
            Some(AppEnv::Production) => (LogFormat::Json, "json (default in production)"),
            _ => (LogFormat::Pretty, "pretty (default outside production)"),
        };
        if v.report.summary.get("LOG_FORMAT") == Some("unset") {
            v.report.summary.set("LOG_FORMAT", shown);
        }
        format
    });

    let mut problems = std::mem::take(&mut v.report.problems);
    let warnings = std::mem::take(&mut v.report.warnings);
    let summary = std::mem::take(&mut v.report.summary);
    let config = (|| {
        let d = defaulted?;
        Some(Config {
            database_url: database_url?,
            host: host?,
            port: port?,
            app_env: app_env?,
            openai_api_key,
            twilio_account_sid,
            twilio_auth_token,
            deploy_hook_secret,
            deploy_hook_url,
            health: d.health,
            pool: d.pool,
            hooks: d.hooks,
            shutdown_timeout: d.serve.shutdown_timeout,
            request_timeout: d.request_timeout,
            header_read_timeout: d.serve.header_read_timeout,
            shutdown_linger: d.serve.linger,
            max_connections: d.serve.max_connections,
            metrics_token,
            render_api_key,
            render_api_url: render_api_url?,
            log_format,
            render,
            warnings: warnings.clone(),
            summary: summary.clone(),
        })
    })();
    let result = match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            // `require` names a variable the schema lets go missing, so this is never empty.
            debug_assert!(!problems.is_empty());
            if problems.is_empty() {
                problems.push(Problem {
                    var: "DATABASE_URL".to_owned(),
                    problem: "the built-in schema and the code disagree".to_owned(),
                    kind: ProblemKind::Invalid,
                });
            }
            Err(ConfigErrors { problems })
        }
    };
    let validation = Validation {
        result,
        warnings,
        summary,
    };
    (validation, std::mem::take(&mut v.read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::{DbPolicy, ReplayStoreKind};
    use crate::schema::Kind;

    /// Every variable of the built-in schema, set to a valid value.
    fn complete_env() -> Env {
        [
            ("DATABASE_URL", "postgres://app:pw@db.internal:5432/app"),
            ("PORT", "10000"),
            ("APP_ENV", "production"),
            ("OPENAI_API_KEY", "sk-abcdefghijklmnopqrstuvwx"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
            (
                "RENDER_DEPLOY_HOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            (
                "RENDER_DEPLOY_HOOK_URL",
                "https://api.render.com/deploy/srv-abc?key=k3y",
            ),
            ("METRICS_TOKEN", "a-metrics-token-of-some-length"),
            ("LOG_FORMAT", "json"),
            ("RENDER", "true"),
            ("RENDER_SERVICE_ID", "srv-abc"),
            ("RENDER_SERVICE_NAME", "web"),
            ("RENDER_INSTANCE_ID", "srv-abc-xyz"),
            ("RENDER_GIT_COMMIT", "0123abc"),
            ("RENDER_CPU_COUNT", "2"),
            ("RENDER_EXTERNAL_URL", "https://web.onrender.com"),
            ("RENDER_API_KEY", "rnd_abcdefghijklmnop"),
            ("RENDER_API_URL", "https://api.render.com/v1"),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn the_code_reads_exactly_the_variables_of_the_builtin_schema_as_their_kinds() {
        let schema = Schema::builtin();
        let mut v = Values::new(schema.check(&complete_env(), Mode::Serve));
        let (validation, mut read) = assemble(&mut v);
        let problems = validation.result.err().map(|e| e.problems);
        assert_eq!(problems, None, "the schema and the code disagree");

        let aliases: Vec<&str> = schema
            .rules()
            .iter()
            .flat_map(|r| r.aliases.iter().map(String::as_str))
            .collect();
        let mut in_schema: Vec<&str> = schema
            .rules()
            .iter()
            .map(|r| r.name.as_str())
            .filter(|n| !aliases.contains(n))
            .collect();
        read.sort_unstable();
        read.dedup();
        in_schema.sort_unstable();
        assert_eq!(read, in_schema);
    }

    #[test]
    fn each_enum_of_the_code_has_the_words_of_its_schema_rule() {
        let cases: [(&str, &[&str]); 4] = [
            ("APP_ENV", AppEnv::WORDS),
            ("HEALTH_DB_POLICY", DbPolicy::WORDS),
            ("WEBHOOK_REPLAY_STORE", ReplayStoreKind::WORDS),
            ("LOG_FORMAT", LogFormat::WORDS),
        ];
        for (name, words) in cases {
            let rule = Schema::builtin().rule(name).expect(name);
            assert_eq!(rule.kind, Kind::Enum, "{name}");
            assert_eq!(rule.values, words.to_vec(), "{name}");
        }
    }

    #[test]
    fn every_default_the_code_needs_comes_from_the_builtin_schema() {
        let d = defaults().expect("every default");
        assert_eq!(d.serve.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(d.serve.linger, Duration::from_millis(250));
        assert_eq!(d.pool.max, PoolMax::Auto);
        assert_eq!(d.serve.max_connections, MaxConnections::Auto);
        assert_eq!(d.hooks.max_inflight, 8 * 1024 * 1024);
        assert_eq!(d.hooks.replay_store, ReplayStoreKind::Memory);
        assert_eq!(d.health.db_policy, DbPolicy::GateStartup);
        assert_eq!(HealthSettings::default(), d.health);
    }

    #[test]
    fn a_value_of_another_shape_than_the_code_reads_is_a_problem_not_a_fallback() {
        let schema = Schema::parse("[HEALTH_CACHE_TTL]\nkind = \"string\"\n", "test").unwrap();
        let env: Env = [("HEALTH_CACHE_TTL", "sixty")].into_iter().collect();
        let mut v = Values::new(schema.check(&env, Mode::Serve));
        assert_eq!(v.secs("HEALTH_CACHE_TTL"), None);
        let problem = &v.report.problems[0];
        assert_eq!(problem.var, "HEALTH_CACHE_TTL");
        assert!(problem.problem.contains("disagree"), "{}", problem.problem);
    }
}
