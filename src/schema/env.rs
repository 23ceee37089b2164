//! The environment to check: names and values, non-UTF-8 values kept so that they are reported.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;

/// The environment to check: names and values, with non-UTF-8 values kept as such (so that
/// they are reported, not silently dropped). `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, Option<String>>,
}

impl Env {
    /// This process's environment.
    pub fn from_process() -> Self {
        Self::from_os(std::env::vars_os())
    }

    /// An environment from OS strings; a name that is not UTF-8 cannot name a variable of a
    /// schema and is skipped, a value that is not UTF-8 is kept as such.
    pub fn from_os<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut env = Self::default();
        for (k, v) in vars {
            if let Ok(name) = k.into().into_string() {
                env.vars.insert(name, v.into().into_string().ok());
            }
        }
        env
    }

    /// Sets a variable (the `dev` command sets `DATABASE_URL` to its throwaway cluster).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), Some(value.into()));
    }

    /// Removes a variable.
    pub fn remove(&mut self, name: &str) {
        self.vars.remove(name);
    }

    /// Whether a variable is set (to anything, even empty or non-UTF-8).
    pub fn contains(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// A variable's value, when set and UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).and_then(|v| v.as_deref())
    }

    pub(super) fn lookup(&self, name: &str) -> Option<Option<&str>> {
        self.vars.get(name).map(|v| v.as_deref())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut env = Self::default();
        for (k, v) in iter {
            env.set(k, v);
        }
        env
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}
