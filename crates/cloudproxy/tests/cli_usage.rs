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
        .env_remove("CLOUDPROXY_APP_CERT")
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

#[test]
fn doctor_refuses_bad_modes_and_reports_an_unreachable_control_plane() {
    let base = [
        "doctor",
        "--app-id",
        "app-x",
        "--app-cert",
        "cert-x",
        "--control",
        "https://127.0.0.1:1",
    ];
    for (mode, code) in [("1", "NOT_SUPPORTED"), ("7", "INVALID_PARAMETER")] {
        let mut a = base.to_vec();
        a.extend(["--mode", mode]);
        let out = cloudproxy(&a);
        assert_eq!(
            out.status.code(),
            Some(64),
            "--mode {mode}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(code),
            "--mode {mode}: {}",
            stderr(&out)
        );
    }
    // Neither a token nor a certificate: a usage error.
    let out = cloudproxy(&["doctor", "--app-id", "app-x"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    // Nothing listens on port 1: every mode's proxy-info check fails, nothing else is tried.
    let mut a = base.to_vec();
    a.push("--json");
    let out = cloudproxy(&a);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "three modes and a summary: {}",
        stdout(&out)
    );
    for (l, mode) in lines.iter().zip([3, 4, 5]) {
        assert_eq!(l["mode"], mode, "{l}");
        assert_eq!(l["step"], "proxy-info", "{l}");
        assert_eq!(l["verdict"], "FAIL", "{l}");
        assert_eq!(l["target"], "127.0.0.1:1", "{l}");
        assert!(
            l["detail"]
                .as_str()
                .unwrap_or("")
                .starts_with("CONTROL_PLANE_UNREACHABLE"),
            "{l}"
        );
    }
    assert_eq!(lines[3]["summary"]["fail"], 3, "{}", stdout(&out));
}
