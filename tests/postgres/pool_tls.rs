//! TLS by `sslmode` against a local server with `ssl=on` and certificates made in the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use render_deploy::database_url::DatabaseUrl;
use render_deploy::local_postgres::{LocalPostgres, LocalPostgresOptions};
use render_deploy::pool::{PoolError, PoolManager, PoolMax, PoolSettings};

/// The name the server's certificate is issued for (and no other: not 127.0.0.1).
const SERVER_NAME: &str = "db.example.test";

/// A CA, a server certificate it signed, and an unrelated CA, as PEM files.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca("render-deploy test CA");
        let other = make_ca("some other CA");
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
        std::fs::write(dir.path().join("server.crt"), server.pem()).unwrap();
        let key = dir.path().join("server.key");
        std::fs::write(&key, server_key.serialize_pem()).unwrap();
        // PostgreSQL refuses a key readable by others, and reads it as the server's user.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let server_user = nix::unistd::Uid::effective()
            .is_root()
            .then(|| nix::unistd::User::from_name("postgres").unwrap())
            .flatten();
        if let Some(pg) = server_user {
            for path in [dir.path().to_path_buf(), key, dir.path().join("server.crt")] {
                std::os::unix::fs::chown(&path, Some(pg.uid.as_raw()), Some(pg.gid.as_raw()))
                    .unwrap();
            }
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_settings(&self) -> Vec<(String, String)> {
        let p = |name: &str| self.path(name).display().to_string();
        vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), p("server.crt")),
            ("ssl_key_file".into(), p("server.key")),
        ]
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn start_tls_server(certs: &Certificates) -> LocalPostgres {
    LocalPostgres::start_with(LocalPostgresOptions {
        settings: certs.server_settings(),
        ..LocalPostgresOptions::default()
    })
    .unwrap()
}

/// A URL of the cluster with `host`, the server reached on 127.0.0.1 whatever the host.
fn url(pg: &LocalPostgres, host: &str, query: &str) -> DatabaseUrl {
    use secrecy::ExposeSecret;
    DatabaseUrl::parse(&format!(
        "postgres://postgres:{}@{host}:{}/postgres?hostaddr=127.0.0.1&{query}",
        pg.password().expose_secret(),
        pg.port()
    ))
    .unwrap()
}

/// Checks out one connection and says whether it is encrypted.
async fn encrypted(url: &DatabaseUrl) -> Result<bool, PoolError> {
    let settings = PoolSettings {
        max: PoolMax::Fixed(1),
        wait_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(3),
        ..PoolSettings::default()
    };
    let pool = PoolManager::new(url, &settings)?;
    let conn = pool.get_connection().await?;
    let row = conn
        .query_typed_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

fn rootcert(certs: &Certificates, file: &str) -> String {
    format!("sslrootcert={}", certs.path(file).display())
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_checking_and_disable_does_not() {
    let certs = Certificates::make();
    let pg = start_tls_server(&certs);
    // The certificate names neither 127.0.0.1 nor a CA anyone trusts: require does not care.
    assert_eq!(
        encrypted(&url(&pg, "127.0.0.1", "sslmode=require")).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&url(&pg, "127.0.0.1", "sslmode=prefer")).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&url(&pg, "127.0.0.1", "sslmode=disable")).await,
        Ok(false)
    );
}

#[tokio::test]
async fn verify_full_accepts_the_right_ca_and_name_and_refuses_a_wrong_name_or_an_unknown_ca() {
    let certs = Certificates::make();
    let pg = start_tls_server(&certs);
    let ca = rootcert(&certs, "ca.pem");
    let good = url(&pg, SERVER_NAME, &format!("sslmode=verify-full&{ca}"));
    assert_eq!(encrypted(&good).await, Ok(true));

    let wrong_name = url(&pg, "127.0.0.1", &format!("sslmode=verify-full&{ca}"));
    let err = encrypted(&wrong_name).await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Tls {
                sslmode: "verify-full",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    {
        use secrecy::ExposeSecret;
        let password = pg.password().expose_secret();
        for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            assert!(!shown.contains(password), "the password shows in {shown}");
        }
    }

    let other = rootcert(&certs, "other-ca.pem");
    let unknown_ca = url(&pg, SERVER_NAME, &format!("sslmode=verify-full&{other}"));
    let err = encrypted(&unknown_ca).await.unwrap_err();
    assert!(matches!(err, PoolError::Tls { .. }), "{err:?}");

    // Without sslrootcert the public roots are used, and they do not know this CA.
    let public_roots = url(&pg, SERVER_NAME, "sslmode=verify-full");
    let err = encrypted(&public_roots).await.unwrap_err();
    assert!(matches!(err, PoolError::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let certs = Certificates::make();
    let pg = start_tls_server(&certs);
    let ca = rootcert(&certs, "ca.pem");
    let other_name = url(&pg, "127.0.0.1", &format!("sslmode=verify-ca&{ca}"));
    assert_eq!(encrypted(&other_name).await, Ok(true));

    let other = rootcert(&certs, "other-ca.pem");
    let unknown_ca = url(&pg, "127.0.0.1", &format!("sslmode=verify-ca&{other}"));
    let err = encrypted(&unknown_ca).await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Tls {
                sslmode: "verify-ca",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn the_certificate_files_are_where_the_server_is_told_to_look() {
    let certs = Certificates::make();
    for (_, value) in certs.server_settings().iter().skip(1) {
        assert!(Path::new(value).is_file(), "{value}");
    }
}
