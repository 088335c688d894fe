//! Command-line behaviour of the admin and token subcommands that needs no server.

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

fn cloudproxy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloudproxy"))
        .args(args)
        // Keep the caller's environment from leaking into the flags under test.
        .env_remove("CLOUDPROXY_CONTROL")
        .env_remove("CLOUDPROXY_ADMIN_TOKEN")
        .env_remove("CLOUDPROXY_CA")
        .env_remove("CLOUDPROXY_APP_CERTIFICATE")
        .output()
        .expect("run cloudproxy")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn app_help_lists_the_subcommands() {
    let out = cloudproxy(&["app", "--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let help = stdout(&out);
    for sub in [
        "create", "list", "show", "update", "suspend", "resume", "promote", "delete", "usage",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(sub)),
            "`{sub}` missing from:\n{help}"
        );
    }
    for flag in ["--control", "--admin-token", "--ca", "--json"] {
        assert!(help.contains(flag), "`{flag}` missing from:\n{help}");
    }
}

#[test]
fn top_level_help_lists_the_admin_commands() {
    let out = cloudproxy(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for sub in ["app", "edges", "secrets", "whitelist", "token"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(sub)),
            "`{sub}` missing from:\n{help}"
        );
    }
}

#[test]
fn bad_whitelist_format_is_usage_error() {
    let out = cloudproxy(&[
        "whitelist",
        "--format",
        "bogus",
        "--app",
        "x",
        "--admin-token",
        "t",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}

#[test]
fn missing_admin_token_is_usage_error() {
    let out = cloudproxy(&["app", "list", "--control", "https://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("admin token"), "{}", stderr(&out));
}

#[test]
fn bad_control_url_is_usage_error() {
    let out = cloudproxy(&[
        "edges",
        "list",
        "--control",
        "not a url",
        "--admin-token",
        "t",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}

#[test]
fn unreachable_control_plane_exits_69() {
    // Nothing listens on port 1. Global flags work after the subcommand and before it.
    for args in [
        &[
            "app",
            "list",
            "--control",
            "https://127.0.0.1:1",
            "--admin-token",
            "t",
        ][..],
        &[
            "app",
            "--control",
            "https://127.0.0.1:1",
            "--admin-token",
            "t",
            "list",
        ][..],
        &[
            "edges",
            "list",
            "--control",
            "https://127.0.0.1:1",
            "--admin-token",
            "t",
        ][..],
    ] {
        let out = cloudproxy(args);
        assert_eq!(out.status.code(), Some(69), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn token_verifies() {
    let cert = "0123456789abcdef0123456789abcdef";
    let out = cloudproxy(&[
        "token",
        "--app-id",
        "app1",
        "--certificate",
        cert,
        "--channel",
        "room-7",
        "--uid",
        "42",
        "--ttl",
        "600",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let token = stdout(&out);
    let token = token.trim();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = credentials::join_token::verify_join_token(
        token,
        "app1",
        cert.as_bytes(),
        "room-7",
        "42",
        now,
    )
    .expect("token verifies");
    assert!(
        expires > now && expires <= now + 601,
        "expiry {expires}, now {now}"
    );
    // Bound to the channel.
    assert!(credentials::join_token::verify_join_token(
        token,
        "app1",
        cert.as_bytes(),
        "room-8",
        "42",
        now
    )
    .is_err());
}

#[test]
fn token_rejects_colons() {
    let out = cloudproxy(&[
        "token",
        "--app-id",
        "app1",
        "--certificate",
        "c",
        "--channel",
        "a:b",
        "--uid",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(64));
}
