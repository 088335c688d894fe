//! `cloudproxy token`: mint a join token the way an app server does (for scripts, the demo
//! and tests). Prints the token alone on stdout.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::EX_USAGE;

/// Join token options.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The App ID.
    #[arg(long, value_name = "ID")]
    app_id: String,
    /// The App ID's certificate (from `cloudproxy app create` / `app show`).
    #[arg(
        long,
        env = "CLOUDPROXY_APP_CERTIFICATE",
        hide_env_values = true,
        value_name = "CERT"
    )]
    certificate: String,
    /// Channel the client may join.
    #[arg(long, value_name = "C")]
    channel: String,
    /// User id of the client.
    #[arg(long, value_name = "U")]
    uid: String,
    /// Lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    ttl: u64,
}

/// Runs `cloudproxy token`.
pub fn run(args: TokenArgs) -> ExitCode {
    for (flag, value) in [
        ("--app-id", &args.app_id),
        ("--channel", &args.channel),
        ("--uid", &args.uid),
    ] {
        if value.is_empty() || value.contains(':') {
            eprintln!("error: {flag} must be non-empty and must not contain ':'");
            return ExitCode::from(EX_USAGE);
        }
    }
    if args.certificate.is_empty() {
        eprintln!("error: --certificate must not be empty");
        return ExitCode::from(EX_USAGE);
    }
    let token = mint(
        &args.app_id,
        &args.certificate,
        &args.channel,
        &args.uid,
        args.ttl,
    );
    println!("{token}");
    ExitCode::SUCCESS
}

/// A join token for `channel` and `uid`, valid for `ttl` seconds from now.
pub fn mint(app_id: &str, certificate: &str, channel: &str, uid: &str, ttl: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    credentials::join_token::mint_join_token(
        app_id,
        certificate.as_bytes(),
        channel,
        uid,
        now.saturating_add(ttl),
    )
}
