//! Progress on stderr: what was done, and long waits with their elapsed time
//! (`rds gw-db: creating (3m12s)`). A spinner on a terminal, plain lines otherwise.

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The outcome of one poll of a wait.
pub enum Poll<T> {
    Ready(T),
    /// Not yet; the string is the state shown, e.g. `creating`.
    Pending(String),
}

#[derive(Clone)]
pub struct Progress {
    bars: Option<MultiProgress>,
    quiet: bool,
}

impl Progress {
    /// Spinners when stderr is a terminal, plain lines otherwise; nothing when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let bars = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { bars, quiet }
    }

    /// One line of what was done, e.g. `created vpc gw-vpc (vpc-0abc)`.
    pub fn line(&self, message: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(message.as_ref());
            }
            None => eprintln!("{}", message.as_ref()),
        }
    }

    /// Polls `check` until it is ready, showing `label: state (elapsed)`. Polls every
    /// second at first, then less often (up to every 10 s). Fails after `limit`.
    pub async fn wait<T, F, Fut>(&self, label: &str, limit: Duration, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>>>,
    {
        let started = Instant::now();
        let spinner = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let mut interval = Duration::from_millis(500);
        let mut last_state = String::new();
        let mut last_line = Instant::now();
        let result = loop {
            let state = match check().await {
                Ok(Poll::Ready(value)) => break Ok(value),
                Ok(Poll::Pending(state)) => state,
                Err(e) => break Err(e),
            };
            let elapsed = started.elapsed();
            let message = format!("{label}: {state} ({})", elapsed_text(elapsed));
            match &spinner {
                Some(bar) => bar.set_message(message),
                None if !self.quiet
                    && (state != last_state || last_line.elapsed() >= Duration::from_secs(30)) =>
                {
                    eprintln!("{message}");
                    last_line = Instant::now();
                }
                None => {}
            }
            last_state = state;
            if elapsed >= limit {
                break Err(anyhow::anyhow!(
                    "{label}: still {last_state} after {}; run the command again to resume waiting, \
                     or look at the resource in the AWS console",
                    elapsed_text(elapsed)
                ));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(10));
        };
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        if result.is_ok() && started.elapsed() >= Duration::from_secs(2) {
            self.line(format!(
                "{label}: ready ({})",
                elapsed_text(started.elapsed())
            ));
        }
        result
    }
}

/// `45s`, `3m12s`, `1h02m`.
pub fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_reads_like_a_clock() {
        assert_eq!(elapsed_text(Duration::from_secs(45)), "45s");
        assert_eq!(elapsed_text(Duration::from_secs(192)), "3m12s");
        assert_eq!(elapsed_text(Duration::from_secs(3720)), "1h02m");
    }

    #[tokio::test]
    async fn wait_returns_when_ready_and_fails_after_the_limit() {
        let progress = Progress::new(true);
        let mut n = 0;
        let got = progress
            .wait("thing", Duration::from_secs(10), || {
                n += 1;
                let ready = n >= 2;
                async move {
                    Ok(if ready {
                        Poll::Ready(7)
                    } else {
                        Poll::Pending("creating".into())
                    })
                }
            })
            .await
            .unwrap();
        assert_eq!(got, 7);
        let err = progress
            .wait("rds gw-db", Duration::from_millis(1), || async {
                Ok(Poll::<()>::Pending("creating".into()))
            })
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rds gw-db: still creating after"),
            "{err}"
        );
    }
}
