//! What the commands that act as a client of the cloud proxy (`join`, `doctor`) share: the
//! App ID, the join token (given, or minted from the App certificate), the control plane and
//! whom to trust for it, and the runtime they run on.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::{token_cmd, EX_USAGE};

/// The App ID, its token, and the control plane.
#[derive(Args, Debug)]
pub struct AccessArgs {
    /// App ID.
    #[arg(long)]
    pub app_id: String,
    /// Join token for --channel and --uid (from the app's token server).
    #[arg(
        long,
        required_unless_present = "app_cert",
        conflicts_with = "app_cert"
    )]
    pub token: Option<String>,
    /// App certificate, to mint a join token here (testing only: a real app never ships it).
    #[arg(long, env = "CLOUDPROXY_APP_CERT", hide_env_values = true)]
    pub app_cert: Option<String>,
    /// Control plane base URL.
    #[arg(
        long,
        default_value = "https://127.0.0.1:443",
        env = "CLOUDPROXY_CONTROL"
    )]
    pub control: String,
    /// Extra CA certificate (PEM) to trust, for the control plane and the edges' TLS port.
    #[arg(long, value_name = "FILE", env = "CLOUDPROXY_CA")]
    pub ca: Option<PathBuf>,
}

impl AccessArgs {
    /// The `--ca` file's PEM; on a read error, says so for `cmd` and gives the usage exit
    /// code.
    pub fn ca_pem(&self, cmd: &str) -> Result<Option<String>, ExitCode> {
        match &self.ca {
            None => Ok(None),
            Some(p) => std::fs::read_to_string(p).map(Some).map_err(|e| {
                eprintln!("cloudproxy {cmd}: --ca {}: {e}", p.display());
                ExitCode::from(EX_USAGE)
            }),
        }
    }

    /// `--token` as given, or one minted here from `--app-cert` for `channel` and `uid`
    /// (valid for an hour); `None` when neither was given.
    pub fn token(&self, channel: &str, uid: &str) -> Option<String> {
        match (&self.token, &self.app_cert) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(cert)) => Some(token_cmd::mint(&self.app_id, cert, channel, uid, 3600)),
            (None, None) => None,
        }
    }
}

/// Runs `main` on a two-thread runtime (what one SDK client needs).
pub fn run_in_runtime<F: Future<Output = ExitCode>>(cmd: &str, main: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(main),
        Err(e) => {
            eprintln!("cloudproxy {cmd}: runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
