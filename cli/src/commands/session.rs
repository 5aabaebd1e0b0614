//! `login` and `logout`.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{bail, Context as _};
use serde_json::json;

use super::{emit, emit_json, Ctx};
use crate::cli::LoginArgs;
use crate::client::{is_status, Body};
use crate::credentials::Credentials;

pub fn login(ctx: &Ctx, args: &LoginArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let password = read_password(args.password_file.as_deref(), &args.username, client.base())?;
    if password.is_empty() {
        bail!("the password is empty");
    }
    let session = client.login(&args.username, &password)?;
    let mut creds = Credentials::load(&ctx.creds_path)?;
    creds
        .servers
        .insert(client.base().to_string(), session.clone());
    creds.save(&ctx.creds_path)?;
    if ctx.json() {
        // The tokens stay in the credentials file; they are not printed.
        emit_json(&json!({
            "server": client.base(),
            "username": session.username,
            "role": session.role,
            "expires_at": session.expires_at,
            "refresh_expires_at": session.refresh_expires_at,
            "credentials": ctx.creds_path.display().to_string(),
        }))
    } else {
        emit(&format!(
            "logged in to {} as {} ({}); tokens kept in {}\n",
            client.base(),
            session.username,
            session.role,
            ctx.creds_path.display()
        ))
    }
}

pub fn logout(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    if !is_stored(ctx, client.base())? {
        return emit(&format!("not logged in to {}\n", client.base()));
    }
    let mut api = ctx.api()?;
    if api.session().refresh_expires_at <= crate::duration::now_ms() / 1000 {
        // Nothing on the server can use these tokens any more.
        api.forget()?;
        return emit(&format!(
            "the session at {} had expired; its tokens are forgotten\n",
            api.client.base()
        ));
    }
    let result = api.post("/auth/logout", &Body::None);
    match result {
        Ok(_) => {}
        // Already ended on the server (the refresh that was tried forgot it, or the
        // token was refused): forgetting it locally is all that is left.
        Err(e) if is_status(&e, 401) || !is_stored(ctx, api.client.base())? => {}
        // The server could not be told: keep the tokens so that logout can be retried.
        Err(e) => return Err(e.context("log out (the stored tokens are kept)")),
    }
    api.forget()?;
    emit(&format!(
        "logged out of {}: every session of {} there has ended\n",
        api.client.base(),
        api.session().username
    ))
}

fn is_stored(ctx: &Ctx, server: &str) -> anyhow::Result<bool> {
    Ok(Credentials::load(&ctx.creds_path)?
        .servers
        .contains_key(server))
}

/// The password: the first line of `file` (`-`: standard input), else asked for on the
/// terminal without echo, else the first line of standard input. Never a flag value,
/// which other users could read in the process list.
fn read_password(file: Option<&Path>, username: &str, server: &str) -> anyhow::Result<String> {
    let text = match file {
        Some(p) if p == Path::new("-") => read_line(&mut std::io::stdin().lock())?,
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("read --password-file {}", p.display()))?,
        None if std::io::stdin().is_terminal() => prompt(username, server)?,
        None => read_line(&mut std::io::stdin().lock())?,
    };
    Ok(first_line(&text).to_string())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn read_line(input: &mut impl std::io::BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("read the password from standard input")?;
    Ok(line)
}

fn prompt(username: &str, server: &str) -> anyhow::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    let mut err = std::io::stderr();
    let _ = write!(err, "password for {username} at {server}: ");
    let _ = err.flush();
    tcsetattr(&stdin, OptionalActions::Flush, &quiet).context("turn off the terminal's echo")?;
    let line = read_line(&mut stdin.lock());
    // Restore the echo whatever the read did.
    let restored = tcsetattr(&stdin, OptionalActions::Now, &saved);
    let line = line?;
    restored.context("restore the terminal's echo")?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_the_first_line_without_its_newline() {
        assert_eq!(first_line("secret\n"), "secret");
        assert_eq!(first_line("secret\r\nsecond"), "secret");
        assert_eq!(first_line("  spaced  \n"), "  spaced  ");
        assert_eq!(first_line(""), "");
        let mut input = std::io::Cursor::new("pw-from-stdin\nmore\n");
        assert_eq!(
            read_line(&mut input).expect("read"),
            "pw-from-stdin\n".to_string()
        );
    }

    #[test]
    fn a_password_file_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "from-a-file\n").expect("write");
        assert_eq!(
            read_password(Some(&path), "u", "s").expect("read"),
            "from-a-file"
        );
        let missing =
            read_password(Some(&dir.path().join("nope")), "u", "s").expect_err("missing file");
        assert!(format!("{missing:#}").contains("--password-file"));
    }
}
