//! `rudder token`: make the key pair and service-account tokens that file mode
//! verifies proxies with (see `crate::auth`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::auth::{generate_key_pair, TokenIdentity, TokenMinter};

/// Files written by `rudder token keygen`.
pub const PRIVATE_KEY_FILE: &str = "jwt-key.pem";
pub const PUBLIC_KEY_FILE: &str = "jwt-pub.pem";

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenAction {
    /// Write a new ES256 signing key pair: jwt-key.pem (private, mode 0600) and
    /// jwt-pub.pem (public, what Rudder verifies with). Never overwrites.
    Keygen(KeygenArgs),
    /// Print (or write with --out) a service-account token signed with --key.
    Issue(IssueArgs),
}

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Directory for jwt-key.pem and jwt-pub.pem; created if missing.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct IssueArgs {
    /// PKCS#8 ECDSA P-256 private key, e.g. jwt-key.pem from `rudder token keygen`.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The token's `iss`; must match the issuer Rudder is configured with.
    #[arg(long, default_value = "rudder-local")]
    pub issuer: String,
    /// The token's `aud`; repeat for several.
    #[arg(long = "audience", value_name = "AUD", default_value = "rudder")]
    pub audiences: Vec<String>,
    /// The service account's namespace.
    #[arg(long)]
    pub namespace: String,
    /// The service account's name.
    #[arg(long)]
    pub service_account: String,
    /// How long the token is valid, e.g. 1h, 30m, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Write the token here (mode 0600, replaced atomically) instead of
    /// printing it. No trailing newline: Envoy sends the file as it is.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.action {
        TokenAction::Keygen(args) => keygen(&args),
        TokenAction::Issue(args) => {
            let token = issue(&args, SystemTime::now())?;
            match &args.out {
                Some(path) => write_token(path, &token),
                None => {
                    println!("{token}");
                    Ok(())
                }
            }
        }
    }
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let dir = &args.out_dir;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (private_path, public_path) = (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    // Check both first, so a refusal never leaves half a pair behind.
    for path in [&private_path, &public_path] {
        if path.exists() {
            anyhow::bail!(
                "{} already exists; not overwriting a key (remove it first to replace the pair)",
                path.display()
            );
        }
    }
    let (private_pem, public_pem) = generate_key_pair()?;
    write_new(&private_path, &private_pem, 0o600)?;
    if let Err(e) = write_new(&public_path, &public_pem, 0o644) {
        let _ = fs::remove_file(&private_path);
        return Err(e);
    }
    eprintln!(
        "wrote {} (private, keep secret) and {} (public)",
        private_path.display(),
        public_path.display()
    );
    Ok(())
}

fn issue(args: &IssueArgs, now: SystemTime) -> anyhow::Result<String> {
    let pem = fs::read_to_string(&args.key)
        .with_context(|| format!("reading --key {}", args.key.display()))?;
    let minter = TokenMinter::new(&pem, args.issuer.clone())
        .with_context(|| format!("--key {}", args.key.display()))?;
    let id = TokenIdentity {
        namespace: args.namespace.clone(),
        service_account: args.service_account.clone(),
    };
    Ok(minter.mint(&id, &args.audiences, args.ttl, now)?)
}

/// Creates `path`, failing if it exists; `mode` applies from creation, so a
/// private key is never briefly readable by others.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .with_context(|| format!("writing {}", path.display()))
}

/// A reader (Envoy re-reading its token file) sees the old token or the new
/// one, never a partial write.
fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.tmp.{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let result = write_new(&tmp, token, 0o600).and_then(|()| {
        fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::auth::TokenVerifier;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> TokenArgs {
        let argv = ["rudder", "token"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Token(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keygen_then_issue_then_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let dir_s = dir.to_str().unwrap();
        run(parse(&["keygen", "--out-dir", dir_s])).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f| fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(PRIVATE_KEY_FILE), 0o600);
        }
        // A second keygen must not replace the pair.
        let before = fs::read(dir.join(PRIVATE_KEY_FILE)).unwrap();
        let err = run(parse(&["keygen", "--out-dir", dir_s])).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(fs::read(dir.join(PRIVATE_KEY_FILE)).unwrap(), before);

        let key = dir.join(PRIVATE_KEY_FILE);
        let out = tmp.path().join("token");
        let args = parse(&[
            "issue",
            "--key",
            key.to_str().unwrap(),
            "--namespace",
            "default",
            "--service-account",
            "productpage",
            "--ttl",
            "10m",
            "--out",
            out.to_str().unwrap(),
        ]);
        let TokenAction::Issue(ref issue_args) = args.action else {
            panic!("not issue")
        };
        assert_eq!(issue_args.issuer, "rudder-local");
        assert_eq!(issue_args.audiences, ["rudder"]);
        assert_eq!(issue_args.ttl, Duration::from_secs(600));
        run(args).unwrap();
        let token = fs::read_to_string(&out).unwrap();
        assert!(!token.ends_with('\n'));

        let public = fs::read_to_string(dir.join(PUBLIC_KEY_FILE)).unwrap();
        let verifier =
            TokenVerifier::new("rudder-local".into(), vec!["rudder".into()], &public).unwrap();
        let id = verifier.verify(&token, SystemTime::now()).unwrap();
        assert_eq!(
            (id.namespace.as_str(), id.service_account.as_str()),
            ("default", "productpage")
        );
        let late = SystemTime::now() + Duration::from_secs(3600);
        assert!(verifier.verify(&token, late).is_err());
    }

    #[test]
    fn issue_takes_issuer_and_several_audiences() {
        let args = parse(&[
            "issue",
            "--key",
            "k.pem",
            "--issuer",
            "https://example",
            "--audience",
            "a",
            "--audience",
            "b",
            "--namespace",
            "ns",
            "--service-account",
            "sa",
        ]);
        let TokenAction::Issue(issue_args) = args.action else {
            panic!("not issue")
        };
        assert_eq!(issue_args.issuer, "https://example");
        assert_eq!(issue_args.audiences, ["a", "b"]);
        assert_eq!(issue_args.ttl, Duration::from_secs(3600));
        assert_eq!(issue_args.out, None);
        let err = issue(&issue_args, SystemTime::now()).unwrap_err();
        assert!(format!("{err:#}").contains("k.pem"), "{err:#}");
    }
}
