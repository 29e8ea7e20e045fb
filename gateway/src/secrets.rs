//! Rotated secrets without a restart: once a second, off the request path,
//! the node re-reads `admin_token_file` and `pg_password_file`.
//!
//! - A changed `admin_token_file` replaces the Admin API token at once: the old
//!   token gets 401 from then on.
//! - A changed `pg_password_file` changes the password of new database
//!   connections; pooled ones keep working. The store also re-reads the file
//!   on an authentication failure (see [`crate::store::Store::auth_retry`]),
//!   so a node never waits for this loop to log in.
//!
//! An unreadable or empty file keeps the current secret (a writer that is
//! not atomic shows an empty file for a moment). Values are never logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::config::{read_secret_file, Secret};
use crate::store::Store;

/// How often the files are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct Watch {
    pub admin_token_file: Option<PathBuf>,
    pub admin_token: Arc<ArcSwapOption<Secret>>,
    /// Present on `database = postgres` with `pg_password_file`.
    pub store: Option<Store>,
}

impl Watch {
    /// Nothing to watch: no task needed.
    pub fn is_idle(&self) -> bool {
        self.admin_token_file.is_none() && self.store.is_none()
    }

    /// Checks the files every [`CHECK_EVERY`] until the runtime stops.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        loop {
            tick.tick().await;
            if let Some(path) = self.admin_token_file.clone() {
                // Reading a file is blocking I/O: keep it off the workers.
                let read = tokio::task::spawn_blocking(move || read_secret_file(&path)).await;
                match read {
                    Ok(Ok(new)) => {
                        last_error = None;
                        self.check_admin_token(new);
                    }
                    Ok(Err(e)) => {
                        if last_error.as_ref() != Some(&e) {
                            tracing::warn!("admin_token_file: {e}; keeping the current token");
                            last_error = Some(e);
                        }
                    }
                    Err(_) => {}
                }
            }
            if let Some(store) = &self.store {
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.refresh_password()).await;
            }
        }
    }

    /// Replaces the token when `new` differs; true when it did.
    pub fn check_admin_token(&self, new: Secret) -> bool {
        if self.admin_token.load().as_deref() == Some(&new) {
            return false;
        }
        self.admin_token.store(Some(Arc::new(new)));
        tracing::info!(
            "admin_token_file {} changed: the Admin API now accepts only the new token",
            self.admin_token_file
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_token_replaces_the_old_one() {
        let w = Watch {
            admin_token_file: None,
            admin_token: Arc::new(ArcSwapOption::from_pointee(Some(Secret::new("old")))),
            store: None,
        };
        assert!(!w.check_admin_token(Secret::new("old")));
        assert!(w.check_admin_token(Secret::new("new")));
        assert_eq!(w.admin_token.load().as_deref().unwrap().expose(), "new");
    }
}
