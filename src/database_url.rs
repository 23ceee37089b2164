//! A PostgreSQL connection URL that cannot be printed with its password.
//!
//! [`DatabaseUrl::parse`] is the only way to make one, so a value that exists is valid: a
//! `postgres://` or `postgresql://` URL with a host and a database name, an `sslmode` that this
//! crate understands, and accepted by `tokio-postgres`. `Debug`, `Display` and every error show
//! the password (and a `password=` query parameter) as `****`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// What replaces a secret wherever a URL is shown.
pub(crate) const REDACTED: &str = "****";

/// How the connection is encrypted, from the URL's `sslmode` (PostgreSQL's meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers it, without checking its certificate (libpq's default).
    #[default]
    Prefer,
    /// Always encrypt, without checking the certificate.
    Require,
    /// Always encrypt and check that the certificate chains to a trusted root.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// The values `sslmode` accepts, for error messages.
    pub(crate) const VALUES: &'static str = "disable, prefer, require, verify-ca, verify-full";

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// The `sslmode` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Why a database URL was refused. No variant carries the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    /// The value is empty.
    #[error("is empty (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)")]
    Empty,
    /// The value is not a URL at all.
    #[error("is not a URL (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)")]
    NotAUrl,
    /// The scheme is not `postgres` or `postgresql`.
    #[error("has scheme `{0}` (expected postgres:// or postgresql://)")]
    WrongScheme(String),
    /// No host.
    #[error("has no host (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)")]
    MissingHost,
    /// No database name in the path.
    #[error("has no database name (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)")]
    MissingDatabase,
    /// An `sslmode` this crate does not know.
    #[error("has sslmode `{0}` (expected one of {modes})", modes = SslMode::VALUES)]
    BadSslMode(String),
    /// The PostgreSQL driver refused it; the driver's reason, redacted.
    #[error("is not accepted by the PostgreSQL driver: {0}")]
    Rejected(String),
}

/// A validated PostgreSQL URL whose printed forms never show the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    full: SecretString,
    redacted: String,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
    host: String,
    database: String,
}

impl DatabaseUrl {
    /// Parses and validates a URL (see the module documentation for the rules).
    pub fn parse(value: &str) -> Result<Self, DatabaseUrlError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(DatabaseUrlError::Empty);
        }
        let url = Url::parse(value).map_err(|_| DatabaseUrlError::NotAUrl)?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            // The scheme is shown, but only if it looks like one (never a pasted secret).
            let scheme = url.scheme();
            let shown = if scheme.len() <= 16 { scheme } else { "…" };
            return Err(DatabaseUrlError::WrongScheme(shown.to_owned()));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        if host.is_empty() {
            return Err(DatabaseUrlError::MissingHost);
        }
        let database = url.path().trim_start_matches('/').to_owned();
        if database.is_empty() {
            return Err(DatabaseUrlError::MissingDatabase);
        }
        let mut sslmode = SslMode::default();
        let mut sslrootcert = None;
        for (key, val) in url.query_pairs() {
            match &*key {
                "sslmode" => {
                    sslmode = SslMode::parse(&val).ok_or_else(|| {
                        DatabaseUrlError::BadSslMode(val.chars().take(32).collect())
                    })?
                }
                "sslrootcert" => sslrootcert = Some(PathBuf::from(&*val)),
                _ => {}
            }
        }
        let redacted = redact_url(&url);
        let parsed = Self {
            full: SecretString::from(value.to_owned()),
            redacted,
            sslmode,
            sslrootcert,
            host,
            database,
        };
        // The driver has the last word on what it accepts; its message is redacted.
        if let Err(e) = tokio_postgres::Config::from_str(&parsed.driver_url()) {
            return Err(DatabaseUrlError::Rejected(
                parsed.redact_text(&e.to_string()),
            ));
        }
        Ok(parsed)
    }

    /// The URL with its password and any `password=` parameter replaced by `****`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The `sslmode` of the URL (`prefer` when absent, as libpq does).
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    /// The `sslrootcert` file, when the URL names one.
    pub fn sslrootcert(&self) -> Option<&std::path::Path> {
        self.sslrootcert.as_deref()
    }

    /// The host name (not secret).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The database name (not secret).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The full URL, password included. Only for handing to the driver.
    pub fn expose_secret(&self) -> &str {
        self.full.expose_secret()
    }

    /// The driver's configuration. `sslmode` and `sslrootcert` are taken out because
    /// tokio-postgres knows neither `verify-ca` nor `verify-full`: TLS is this crate's job
    /// (by the pool), and the driver is told only whether to require it.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        tokio_postgres::Config::from_str(&self.driver_url())
            .expect("validated in DatabaseUrl::parse")
    }

    /// Replaces this URL's password wherever it appears in `text` (for driver messages).
    pub(crate) fn redact_text(&self, text: &str) -> String {
        let mut out = text.replace(self.expose_secret(), &self.redacted);
        if let Ok(url) = Url::parse(self.expose_secret()) {
            for secret in secrets_of(&url) {
                if !secret.is_empty() {
                    out = out.replace(&secret, REDACTED);
                }
            }
        }
        out
    }

    fn driver_url(&self) -> String {
        let Ok(mut url) = Url::parse(self.expose_secret()) else {
            return self.expose_secret().to_owned();
        };
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "sslmode" && k != "sslrootcert")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let mode = match self.sslmode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            _ => "require",
        };
        url.query_pairs_mut().append_pair("sslmode", mode);
        url.into()
    }
}

/// The password and `password=` values of a URL, decoded and raw.
fn secrets_of(url: &Url) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = url.password() {
        out.push(p.to_owned());
        // Only `%` followed by two hexadecimal digits is an escape (`%+f` is not).
        if let Ok(decoded) = percent_encoding::percent_decode_str(p).decode_utf8() {
            out.push(decoded.into_owned());
        }
    }
    for (k, v) in url.query_pairs() {
        if k == "password" {
            out.push(v.into_owned());
        }
    }
    // Longest first, so that a secret containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some(REDACTED));
    }
    if shown.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // `set_password` percent-encodes nothing in `****`, but the query serializer would
    // encode `*` as `%2A`; show it plainly.
    shown.to_string().replace("%2A%2A%2A%2A", REDACTED)
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted).finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "CanaryPw-7f3a9";

    #[test]
    fn only_a_percent_and_two_hex_digits_is_decoded_in_a_password() {
        let url = Url::parse("postgres://app:a%41b%+fc%4@db/app").unwrap();
        let secrets = secrets_of(&url);
        assert!(secrets.contains(&"aAb%+fc%4".to_owned()), "{secrets:?}");
        assert!(!secrets.iter().any(|s| s.contains('\u{f}')), "{secrets:?}");
        let url = Url::parse("postgres://app:pw%41@db/app").unwrap();
        assert!(secrets_of(&url).contains(&"pwA".to_owned()));
    }

    #[test]
    fn every_printed_form_hides_the_password() {
        let url = DatabaseUrl::parse(&format!(
            "postgres://app:{CANARY}@db.example.com:5432/app?sslmode=require"
        ))
        .unwrap();
        for shown in [
            url.to_string(),
            format!("{url:?}"),
            url.redacted().to_owned(),
        ] {
            assert!(!shown.contains(CANARY), "{shown}");
            assert!(shown.contains("app:****@db.example.com"), "{shown}");
        }
    }

    #[test]
    fn a_password_query_parameter_is_hidden_too() {
        let url = DatabaseUrl::parse(&format!(
            "postgresql://app@db/app?password={CANARY}&application_name=x"
        ))
        .unwrap();
        assert!(!url.to_string().contains(CANARY), "{url}");
        assert!(url.to_string().contains("password=****"), "{url}");
    }

    #[test]
    fn wrong_urls_are_refused_with_a_reason_and_no_secret() {
        let cases = [
            ("", DatabaseUrlError::Empty),
            ("not a url", DatabaseUrlError::NotAUrl),
            (
                "mysql://u:p@h/db",
                DatabaseUrlError::WrongScheme("mysql".into()),
            ),
            ("postgres://", DatabaseUrlError::MissingHost),
            ("postgres://u:p@host", DatabaseUrlError::MissingDatabase),
            ("postgres://u:p@host/", DatabaseUrlError::MissingDatabase),
            (
                "postgres://u:p@host/db?sslmode=sometimes",
                DatabaseUrlError::BadSslMode("sometimes".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(DatabaseUrl::parse(input).unwrap_err(), expected, "{input}");
        }
        let err = DatabaseUrl::parse(&format!("mysql://u:{CANARY}@h/db")).unwrap_err();
        assert!(!err.to_string().contains(CANARY));
    }

    #[test]
    fn sslmode_and_rootcert_are_read_and_kept_from_the_driver() {
        let url = DatabaseUrl::parse("postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/ca.pem")
            .unwrap();
        assert_eq!(url.sslmode(), SslMode::VerifyFull);
        assert_eq!(url.sslrootcert(), Some(std::path::Path::new("/ca.pem")));
        let cfg = url.pg_config();
        assert_eq!(cfg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(cfg.get_dbname(), Some("db"));
        assert_eq!(
            DatabaseUrl::parse("postgres://u:p@h/db").unwrap().sslmode(),
            SslMode::Prefer
        );
    }

    #[test]
    fn a_percent_encoded_password_is_redacted_from_driver_messages() {
        let url = DatabaseUrl::parse("postgres://u:p%40ss@h/db").unwrap();
        let msg = url.redact_text("auth failed for p@ss and p%40ss");
        assert!(!msg.contains("p@ss") && !msg.contains("p%40ss"), "{msg}");
    }

    /// Property: for any password (random, seeded, 2 000 cases of printable ASCII, URL
    /// delimiters and non-ASCII), in the user-info or as a `password=` parameter, no printed
    /// form shows it, raw or percent-encoded. Passwords are 8+ characters so that one cannot
    /// occur by chance in the rest of the URL.
    #[test]
    fn no_printed_form_contains_any_password() {
        use rand::{RngExt, SeedableRng};
        let alphabet: Vec<char> = (' '..='~').chain(['é', 'ß', '€', '😀', '\u{7f}']).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for case in 0..2000 {
            let len = rng.random_range(8..40);
            let password: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let mut base = Url::parse("postgres://app@db.example.com:5432/app").unwrap();
            let url = if case % 2 == 0 {
                base.set_password(Some(&password)).unwrap();
                base.to_string()
            } else {
                base.query_pairs_mut().append_pair("password", &password);
                base.to_string()
            };
            let encoded_forms = [
                password.clone(),
                url::form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>(),
            ];
            let shown = match DatabaseUrl::parse(&url) {
                Ok(u) => vec![u.to_string(), format!("{u:?}"), u.redacted().to_owned()],
                Err(e) => vec![e.to_string(), format!("{e:?}")],
            };
            for form in &shown {
                for secret in &encoded_forms {
                    assert!(
                        !form.contains(secret.as_str()),
                        "case {case}: {password:?} in {form}"
                    );
                }
                if let Ok(u) = Url::parse(&url)
                    && let Some(p) = u.password()
                {
                    assert!(!form.contains(p), "case {case}: encoded {p:?} in {form}");
                }
            }
        }
    }
}
