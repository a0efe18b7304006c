//! `serve`: opens the store with the rules, reads (or creates) the token
//! file, and runs the library's server; prints the ready line.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use livesettings::serve::{Server, token};
use livesettings::{Options, Rules};

use crate::args::ServeArgs;
use crate::failure::{Failure, note, out};

pub fn run(path: &Path, args: &ServeArgs, rules: Option<Rules>) -> Result<ExitCode, Failure> {
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(|| token::default_file(path));
    let token = token::load_or_create(&token_file)?;
    let store = Options::new()
        .with_origin("livesettings-serve")
        .with_channel_capacity(args.client_backlog)
        .open(path)?;
    if let Some(rules) = rules {
        store.add_rules(&rules)?;
    }
    let mut server = Server::new(Arc::new(store), token.clone())
        .with_listen(args.listen)
        .with_max_body(args.max_body);
    for origin in &args.allow_origin {
        server = server.with_allowed_origin(origin);
    }
    let mut printed = Ok(());
    server.run(|address| {
        let host = if address.ip().is_unspecified() {
            format!("127.0.0.1:{}", address.port())
        } else {
            address.to_string()
        };
        let url = format!("http://{host}/?token={token}");
        // The one line a script (or a test) waits for: machine-readable,
        // with the bound address (the port when --listen asked for 0).
        printed = out(&serde_json::json!({
            "event": "ready",
            "address": address.to_string(),
            "url": url,
            "token_file": token_file.display().to_string(),
        })
        .to_string());
        note(&format!(
            "livesettings serve: {} on http://{address}/ — open the console at {url}",
            path.display()
        ));
    })?;
    printed?;
    note("livesettings serve: stopped");
    Ok(ExitCode::SUCCESS)
}
