//! How big the pool is: the `DB_POOL_MAX=auto` formula of the contract (§5) and the server
//! figures it reads.
//!
//! `auto` = `min(2 × CPUs + 1, ⌊(max_connections − reserved − 10) / (2 × instances)⌋)`: the
//! first term is the classic "cores × 2 + spindle" for a CPU-bound server, the second shares what
//! the server allows between every instance, twice over because during a zero-downtime deploy the
//! old and the new instances hold their pools at the same time; 10 connections stay free for
//! humans, migrations and the pre-deploy command.

use std::fmt;

use serde::Serialize;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{PoolConfigError, PoolMax};

/// Connections left free for people and tools (migrations, `psql`, the pre-deploy command).
pub(crate) const SPARE_CONNECTIONS: i64 = 10;

/// What the server says about its connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerFigures {
    /// `server_version`, e.g. `16.4 (Debian 16.4-1)`.
    pub server_version: String,
    /// `max_connections`.
    pub max_connections: u32,
    /// `superuser_reserved_connections` plus `reserved_connections` (PostgreSQL 16+).
    pub reserved: u32,
}

/// The pool size that was chosen and everything it was chosen from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolSizing {
    /// The server's `server_version`.
    pub server_version: String,
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// Connections the server reserves (superuser and, on 16+, `reserved_connections`).
    pub reserved: u32,
    /// CPUs counted (`RENDER_CPU_COUNT`, or the machine's).
    pub cpus: u32,
    /// `DB_POOL_INSTANCES`.
    pub instances: u32,
    /// `2 × cpus + 1`.
    pub cpu_limit: usize,
    /// `⌊(max_connections − reserved − 10) / (2 × instances)⌋`; may be negative.
    pub budget: i64,
    /// The pool size in use.
    pub chosen: usize,
    /// `true` when `DB_POOL_MAX` was a number rather than `auto`.
    pub fixed: bool,
}

impl PoolSizing {
    /// Whether a fixed `DB_POOL_MAX` asks for more than the server can give every instance
    /// during a deploy (a warning, not an error: the operator chose it).
    pub(crate) fn exceeds_budget(&self) -> bool {
        self.fixed && (self.chosen as i64) > self.budget
    }
}

impl fmt::Display for PoolSizing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formula = format!(
            "min(2 × {cpus} CPUs + 1 = {cpu_limit}, ⌊({max} max_connections − {reserved} reserved − {SPARE_CONNECTIONS}) / (2 × {instances} instances)⌋ = {budget})",
            cpus = self.cpus,
            cpu_limit = self.cpu_limit,
            max = self.max_connections,
            reserved = self.reserved,
            instances = self.instances,
            budget = self.budget,
        );
        if self.fixed {
            write!(
                f,
                "pool size {} (DB_POOL_MAX); auto would choose {formula}",
                self.chosen
            )?;
            if self.exceeds_budget() {
                f.write_str(", so a deploy may exhaust the server's connections")?;
            }
        } else {
            write!(f, "pool size {} (auto) = {formula}", self.chosen)?;
        }
        write!(f, "; PostgreSQL {}", self.server_version)
    }
}

/// `2 × cpus + 1`.
pub(crate) fn cpu_limit(cpus: u32) -> usize {
    2 * cpus.max(1) as usize + 1
}

/// The per-instance connection budget; negative when the server cannot even spare the 10.
pub fn budget(max_connections: u32, reserved: u32, instances: u32) -> i64 {
    let usable = i64::from(max_connections) - i64::from(reserved) - SPARE_CONNECTIONS;
    usable.div_euclid(2 * i64::from(instances.max(1)))
}

/// Chooses the size for `max` from the server's figures (contract §5).
pub fn choose(
    max: PoolMax,
    figures: ServerFigures,
    cpus: u32,
    instances: u32,
) -> Result<PoolSizing, PoolConfigError> {
    let cpus = cpus.max(1);
    let instances = instances.max(1);
    let cpu_limit = cpu_limit(cpus);
    let budget = budget(figures.max_connections, figures.reserved, instances);
    let (chosen, fixed) = match max {
        PoolMax::Fixed(n) => (n, true),
        PoolMax::Auto if budget < 1 => {
            return Err(PoolConfigError::BudgetBelowOne {
                max_connections: figures.max_connections,
                reserved: figures.reserved,
                instances,
                budget,
            });
        }
        // `budget` is at least 1 here, and at most max_connections, so it fits.
        PoolMax::Auto => (cpu_limit.min(usize::try_from(budget).unwrap_or(1)), false),
    };
    Ok(PoolSizing {
        server_version: figures.server_version,
        max_connections: figures.max_connections,
        reserved: figures.reserved,
        cpus,
        instances,
        cpu_limit,
        budget,
        chosen,
        fixed,
    })
}

/// The machine's CPUs, for when `RENDER_CPU_COUNT` is not set.
pub(crate) fn machine_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// Reads the figures with one simple-protocol query (works through PgBouncer too).
/// `reserved_connections` exists from PostgreSQL 16; `current_setting(_, true)` is NULL before.
pub(crate) async fn read_server(client: &Client) -> Result<ServerFigures, tokio_postgres::Error> {
    let messages = client
        .simple_query(
            "SELECT current_setting('server_version'), \
             current_setting('max_connections'), \
             current_setting('superuser_reserved_connections'), \
             coalesce(current_setting('reserved_connections', true), '0')",
        )
        .await?;
    let row = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    let text = |i: usize| row.and_then(|r| r.get(i)).unwrap_or_default();
    let number = |i: usize| text(i).trim().parse::<u32>().unwrap_or(0);
    Ok(ServerFigures {
        server_version: text(0).to_owned(),
        max_connections: number(1),
        reserved: number(2).saturating_add(number(3)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(max_connections: u32, reserved: u32) -> ServerFigures {
        ServerFigures {
            server_version: "16.4".into(),
            max_connections,
            reserved,
        }
    }

    #[test]
    fn auto_takes_the_cpu_limit_when_the_server_has_room() {
        // min(2×2+1 = 5, ⌊(100 − 3 − 10) / 2⌋ = 43) = 5
        let s = choose(PoolMax::Auto, server(100, 3), 2, 1).unwrap();
        assert_eq!((s.cpu_limit, s.budget, s.chosen), (5, 43, 5));
    }

    #[test]
    fn auto_takes_the_server_budget_when_it_is_smaller() {
        // min(2×8+1 = 17, ⌊(40 − 3 − 10) / 2⌋ = 13) = 13
        let s = choose(PoolMax::Auto, server(40, 3), 8, 1).unwrap();
        assert_eq!((s.cpu_limit, s.budget, s.chosen), (17, 13, 13));
        // Two instances share it: ⌊27 / 4⌋ = 6.
        assert_eq!(
            choose(PoolMax::Auto, server(40, 3), 8, 2).unwrap().chosen,
            6
        );
        // Render's smallest database (max_connections 97 on basic-256mb, 3 reserved), 3 instances.
        assert_eq!(
            choose(PoolMax::Auto, server(97, 3), 4, 3).unwrap().chosen,
            9
        );
    }

    #[test]
    fn a_budget_below_one_connection_is_a_configuration_error_that_shows_the_figures() {
        // ⌊(20 − 3 − 10) / (2 × 4)⌋ = 0
        let err = choose(PoolMax::Auto, server(20, 3), 2, 4).unwrap_err();
        assert!(matches!(
            err,
            PoolConfigError::BudgetBelowOne { budget: 0, .. }
        ));
        let text = err.to_string();
        for part in [
            "max_connections 20",
            "3 reserved",
            "4 instances",
            "DB_POOL_MAX",
        ] {
            assert!(text.contains(part), "{text}");
        }
        // Fewer connections than the spare ten: a negative budget, still an error.
        let err = choose(PoolMax::Auto, server(12, 3), 2, 1).unwrap_err();
        assert!(matches!(
            err,
            PoolConfigError::BudgetBelowOne { budget: -1, .. }
        ));
    }

    #[test]
    fn a_fixed_size_is_kept_and_flagged_when_it_exceeds_the_budget() {
        let s = choose(PoolMax::Fixed(50), server(40, 3), 2, 1).unwrap();
        assert_eq!(s.chosen, 50);
        assert!(s.exceeds_budget());
        assert!(s.to_string().contains("may exhaust"), "{s}");
        let s = choose(PoolMax::Fixed(4), server(40, 3), 2, 1).unwrap();
        assert!(!s.exceeds_budget());
    }

    #[test]
    fn the_explanation_is_one_line_with_every_input() {
        let s = choose(PoolMax::Auto, server(40, 3), 8, 1).unwrap();
        let text = s.to_string();
        assert!(!text.contains('\n'));
        assert_eq!(
            text,
            "pool size 13 (auto) = min(2 × 8 CPUs + 1 = 17, ⌊(40 max_connections − 3 reserved − 10) \
             / (2 × 1 instances)⌋ = 13); PostgreSQL 16.4"
        );
    }
}
