//! `emq-cli keygen` and `emq-cli allow`: CURVE key pairs and allowlists.
//! Files only: these commands never connect.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use emq_client::curve::{self, Added};

use crate::exit::{Exit, Failure};
use crate::output::print_json;

/// `keygen`'s arguments.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the key pair (mode 0600, never overwritten); its
    /// public key goes to FILE.pub.
    pub file: PathBuf,
}

/// `allow`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum AllowCommand {
    /// Allow a public key (Z85 text, or a .pub or key pair file).
    Add {
        /// The allowlist file (created if missing).
        list: PathBuf,
        /// The key: 40 Z85 characters, or a .pub or key pair file.
        #[arg(value_name = "KEY")]
        public_key: String,
        /// A name for the key, shown in router logs.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke a key, by its Z85 text or its name.
    Remove {
        /// The allowlist file.
        list: PathBuf,
        /// The key's Z85 text, or its name.
        key_or_name: String,
    },
    /// Show the allowed keys.
    List {
        /// The allowlist file.
        list: PathBuf,
    },
}

fn key_failure(e: curve::CurveError) -> Failure {
    Failure::usage(e.to_string())
}

/// Make a key pair.
pub fn keygen(args: &KeygenArgs, as_json: bool) -> Result<u8, Failure> {
    let pair = curve::generate().map_err(key_failure)?;
    let public_file = curve::save_key_pair(&pair, &args.file).map_err(key_failure)?;
    if as_json {
        print_json(&serde_json::json!({
            "public_key": pair.public.z85(),
            "key_file": args.file,
            "public_file": public_file,
        }));
    } else {
        println!("{}", pair.public);
        eprintln!(
            "emq-cli: key pair in {} (keep it private), public key in {}",
            args.file.display(),
            public_file.display()
        );
    }
    Ok(Exit::Ok.code())
}

/// Change or show an allowlist.
pub fn allow(cmd: &AllowCommand, as_json: bool) -> Result<u8, Failure> {
    let (AllowCommand::Add { list: file, .. }
    | AllowCommand::Remove { list: file, .. }
    | AllowCommand::List { list: file }) = cmd;
    let mut list = curve::load_allowlist(file).map_err(key_failure)?;
    let shown_file = file.display();
    match cmd {
        AllowCommand::Add { public_key, name, .. } => {
            let key = curve::public_key_from_arg(public_key).map_err(key_failure)?;
            let (change, text) = match list.add(key, name) {
                Added::New => ("added", format!("added {key} to {shown_file}")),
                Added::Renamed { was } => (
                    "renamed",
                    format!("{key} was on {shown_file} as {was:?}: renamed it {name:?}"),
                ),
                Added::Unchanged => ("unchanged", format!("{key} is on {shown_file} already")),
            };
            curve::save_allowlist(&list, file).map_err(key_failure)?;
            if as_json {
                print_json(&serde_json::json!({"list": file, "key": key.z85(), "name": name, "change": change}));
            } else {
                println!("{text}");
            }
        }
        AllowCommand::Remove { key_or_name, .. } => {
            let removed = list.remove(key_or_name);
            if removed == 0 {
                return Err(Failure::refused(format!("{key_or_name} is not on {shown_file}")));
            }
            curve::save_allowlist(&list, file).map_err(key_failure)?;
            if as_json {
                print_json(&serde_json::json!({"list": file, "removed": removed}));
            } else {
                println!("removed {key_or_name} from {shown_file} (open connections stay until they close)");
            }
        }
        AllowCommand::List { .. } => {
            if as_json {
                let keys: Vec<_> = list
                    .entries()
                    .map(|(k, n)| serde_json::json!({"key": k.z85(), "name": n}))
                    .collect();
                print_json(&serde_json::json!({"list": file, "keys": keys}));
            } else if list.is_empty() {
                println!("no keys on {shown_file}");
            } else {
                for (key, name) in list.entries() {
                    println!("{key} {name}");
                }
            }
        }
    }
    Ok(Exit::Ok.code())
}
