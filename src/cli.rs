//! The command-line interface (contract §2). Every command takes `--database-url`;
//! `--json` commands print exactly one JSON object on stdout, logs go to stderr.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::config::Config;
use crate::domain::ids::{ConnectorId, GroupId, SpotId};
use crate::domain::vocab::{ChannelKind, OutboxState};
use crate::domain::{demo, import, kaizala, outbox, spots, transfer};
use crate::http::AppState;
use crate::store::{redact_url, Db};

#[derive(Debug, Parser)]
#[command(name = "openspot", version, about = "Self-hosted community-membership server (MeltingSpot and Kaizala APIs)")]
pub struct Cli {
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "OPENSPOT_DATABASE_URL", default_value = "sqlite://openspot.db")]
    pub database_url: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrations run first).
    Serve(ServeArgs),
    /// Manage spots (tenants) and their API keys.
    #[command(subcommand)]
    Spots(SpotsCommand),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Write a consistent copy of the SQLite database to a new file (the server may run).
    Backup {
        /// The file to create (refused if it exists).
        #[arg(long)]
        to: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Replace the SQLite database's data with a backup's, in one transaction (the
    /// server may run; its writes wait meanwhile).
    Restore {
        /// A file written by `openspot backup` (same schema version).
        #[arg(long)]
        from: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Kaizala connectors and user tokens.
    #[command(subcommand)]
    Kaizala(KaizalaCommand),
    /// Spot members.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Deliveries waiting or done: webhook events, Kaizala subscription events, emails.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Operator-console users: the spot's members whose role is Admin.
    #[command(subcommand)]
    Admins(AdminsCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Set an Admin's console password: one line read from standard input, or typed at
    /// a prompt (not echoed). Their console sessions end.
    SetPassword {
        #[arg(long)]
        spot: SpotId,
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a one-time console sign-in link for an Admin (15 minutes, single use).
    LoginLink {
        #[arg(long)]
        spot: SpotId,
        #[arg(long)]
        email: String,
        /// Base URL of the server the link opens.
        #[arg(long, env = "OPENSPOT_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        public_url: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List outbox rows, newest first.
    List {
        #[arg(long)]
        spot: Option<SpotId>,
        /// Pending, Paused, Delivered, Failed or Skipped.
        #[arg(long)]
        state: Option<OutboxState>,
        /// Webhook, Kaizala or Email.
        #[arg(long)]
        channel: Option<ChannelKind>,
        /// The rows of one event (its webhook-id).
        #[arg(long)]
        event: Option<uuid::Uuid>,
        /// At most this many rows (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Queue finished rows again (due now, with a fresh retry schedule).
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["id", "event", "failed", "skipped"])))]
    Retry {
        /// One row.
        #[arg(long)]
        id: Option<uuid::Uuid>,
        /// Every row of one event.
        #[arg(long)]
        event: Option<uuid::Uuid>,
        /// Every Failed row.
        #[arg(long)]
        failed: bool,
        /// Every Skipped row.
        #[arg(long)]
        skipped: bool,
        #[arg(long)]
        spot: Option<SpotId>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Import members and their custom-property values from a CSV or XLSX file.
    Import {
        #[arg(long)]
        spot: SpotId,
        /// The .csv or .xlsx file (header row: email, firstname, lastname, property slugs).
        file: std::path::PathBuf,
        /// Validate and report what would happen, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Add every imported member to this group (repeatable).
        #[arg(long = "group")]
        groups: Vec<GroupId>,
        /// Write the failed rows as CSV (line,email,reason) to this file.
        #[arg(long)]
        errors: Option<std::path::PathBuf>,
        /// Send an invitation email to each member created (queued in the outbox; a
        /// running server delivers them).
        #[arg(long)]
        notify: bool,
        #[arg(long)]
        json: bool,
    },
}

/// A file the import cannot use (exit status 2).
#[derive(Debug)]
pub struct UnusableFile(pub String);

impl std::fmt::Display for UnusableFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnusableFile {}

#[derive(Debug, Subcommand)]
pub enum KaizalaCommand {
    /// Manage connectors (applications) of a spot.
    #[command(subcommand)]
    Connectors(ConnectorsCommand),
    /// Mint user tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Create a connector; prints its applicationId and applicationSecret (shown once).
    Create {
        #[arg(long)]
        spot: SpotId,
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List connectors (of one spot with --spot).
    List {
        #[arg(long)]
        spot: Option<SpotId>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a connector; its tokens stop working.
    Delete {
        application_id: ConnectorId,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Mint a refresh token for a mobile number (like Kaizala's portal "Generate user token").
    Create {
        #[arg(long = "application-id")]
        application_id: String,
        #[arg(long = "mobile-number")]
        mobile_number: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address bound is printed on
    /// stderr as `listening on ADDRESS`).
    #[arg(long, env = "OPENSPOT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base URL clients use to reach this server (default http://<listen>).
    #[arg(long, env = "OPENSPOT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Create (or refresh) a demo spot with sample data and print its API key.
    #[arg(long)]
    pub demo: bool,
    /// Default requests per 10 seconds per spot.
    #[arg(long, env = "OPENSPOT_RATE_LIMIT_PER_10S", default_value_t = 100)]
    pub rate_limit_per_10s: i64,
    /// Default requests per day per spot.
    #[arg(long, env = "OPENSPOT_RATE_LIMIT_PER_DAY", default_value_t = 50_000)]
    pub rate_limit_per_day: i64,
    /// Relay that receives Kaizala login PINs as `{mobileNumber, pin}` (default: the log).
    #[arg(long, env = "OPENSPOT_SMS_WEBHOOK_URL")]
    pub sms_webhook_url: Option<String>,
    /// Token that `GET /metrics` requires as `Authorization: Bearer <token>` (default: open).
    #[arg(long, env = "OPENSPOT_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    #[command(flatten)]
    pub email: Box<EmailArgs>,
    /// Allow outbound calls to private, loopback and link-local addresses.
    #[arg(long, env = "OPENSPOT_ALLOW_PRIVATE_TARGETS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private_targets: bool,
    /// Reverse proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For is believed.
    #[arg(long, env = "OPENSPOT_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Seconds a client has to send a request head (also the idle keep-alive limit).
    #[arg(long, env = "OPENSPOT_HEADER_TIMEOUT_S", default_value_t = 10)]
    pub header_timeout_s: u64,
    /// Seconds a request (body included) may take before 408; imports get four times as long.
    #[arg(long, env = "OPENSPOT_REQUEST_TIMEOUT_S", default_value_t = 30)]
    pub request_timeout_s: u64,
    /// Open connections at once (more wait in the listen backlog).
    #[arg(long, env = "OPENSPOT_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Open connections of one client address (trusted proxies exempt).
    #[arg(long, env = "OPENSPOT_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 128)]
    pub max_connections_per_address: usize,
    /// Requests handled at once (more are answered 503).
    #[arg(long, env = "OPENSPOT_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,
    /// Kaizala generatePin and PIN logins per client address per minute.
    #[arg(long, env = "OPENSPOT_PIN_CALLS_PER_ADDRESS", default_value_t = 30)]
    pub pin_calls_per_address: i64,
    /// Failed API-key/token checks per client address per minute before the address is refused.
    #[arg(long, env = "OPENSPOT_FAILED_AUTH_PER_ADDRESS", default_value_t = 100)]
    pub failed_auth_per_address: u32,
    /// Milliseconds an API key or Kaizala access token stays cached: a rotated key or a
    /// revoked token keeps working this long on replicas that had it cached.
    #[arg(long, env = "OPENSPOT_AUTH_CACHE_TTL_MS", default_value_t = 5_000)]
    pub auth_cache_ttl_ms: u64,
    /// Waits before the retries of a failed webhook or email delivery (ms, s, m or h,
    /// comma-separated); after the last one the delivery fails and its endpoint is disabled.
    #[arg(long, env = "OPENSPOT_WEBHOOK_RETRY_SCHEDULE", default_value = crate::config::DEFAULT_RETRY_SCHEDULE)]
    pub webhook_retry_schedule: String,
    /// Milliseconds one delivery attempt may take.
    #[arg(long, env = "OPENSPOT_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// Milliseconds a claimed delivery belongs to this replica (a dead replica's claims
    /// are taken over after it); at least the attempt timeout plus 2 s.
    #[arg(long, env = "OPENSPOT_OUTBOX_LEASE_MS", default_value_t = 30_000)]
    pub outbox_lease_ms: u64,
    /// Milliseconds between two looks for due deliveries when nothing woke the dispatcher.
    #[arg(long, env = "OPENSPOT_OUTBOX_POLL_MS", default_value_t = 500)]
    pub outbox_poll_ms: u64,
    /// Delivery attempts in flight at once on this replica.
    #[arg(long, env = "OPENSPOT_OUTBOX_MAX_IN_FLIGHT", default_value_t = 64)]
    pub outbox_max_in_flight: usize,
    /// Delivery attempts in flight at once per endpoint or subscription.
    #[arg(long, env = "OPENSPOT_OUTBOX_MAX_IN_FLIGHT_PER_TARGET", default_value_t = 16)]
    pub outbox_max_in_flight_per_target: usize,
    /// Days delivered, failed, skipped and paused deliveries and the delivery log are kept.
    #[arg(long, env = "OPENSPOT_OUTBOX_RETENTION_DAYS", default_value_t = 30)]
    pub outbox_retention_days: u64,
    /// Milliseconds a replica's claim on a smart-group computation lasts without renewal
    /// (a stopped replica's computations are taken over after it). Tests shorten it.
    #[arg(long, env = "OPENSPOT_SMART_GROUP_LEASE_MS", default_value_t = 60_000, hide = true)]
    pub smart_group_lease_ms: u64,
}

/// How `serve` sends invitation emails.
#[derive(Debug, Args)]
pub struct EmailArgs {
    /// SMTP relay of invitation emails: smtp://host[:port], smtps://user:password@host[:port],
    /// smtp://host?tls=starttls (default: none; emails are recorded as skipped).
    #[arg(long, env = "OPENSPOT_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Address invitation emails come from (default openspot@<public-url host>).
    #[arg(long, env = "OPENSPOT_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Link of an invitation email; {publicUrl}, {spotId}, {memberId} and {courseId} are replaced.
    #[arg(long, env = "OPENSPOT_INVITATION_URL", default_value = crate::config::DEFAULT_INVITATION_URL)]
    pub invitation_url: String,
}

#[derive(Debug, Subcommand)]
pub enum SpotsCommand {
    /// Create a spot and print its API key (shown only once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List spots.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Replace a spot's API key; the old key stops working.
    RotateKey {
        spot_id: SpotId,
        #[arg(long)]
        json: bool,
    },
    /// Delete a spot and all its data.
    Delete {
        spot_id: SpotId,
        #[arg(long)]
        json: bool,
    },
    /// Override a spot's rate limits.
    SetLimits {
        spot_id: SpotId,
        #[arg(long = "per-10s")]
        per_10s: Option<i64>,
        #[arg(long = "per-day")]
        per_day: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Set the sender name of the spot's invitation emails (an empty name: the spot's name).
    SetSender {
        spot_id: SpotId,
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Write one spot (every record, ids kept) as JSON lines, for `spots import` into
    /// another database. The file holds key hashes and webhook secrets: keep it safe.
    Export {
        #[arg(long)]
        spot: SpotId,
        /// The file to create (refused if it exists), or `-` for stdout.
        #[arg(long)]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Load a `spots export` file into this database, in one transaction (refused if
    /// the spot exists here already).
    Import {
        /// The export file, or `-` for stdin.
        #[arg(long)]
        from: String,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(&cli.database_url, args).await,
        Command::Migrate => {
            let db = Db::connect_and_migrate(&cli.database_url).await?;
            db.close().await;
            eprintln!("migrations applied to {}", redact_url(&cli.database_url));
            Ok(())
        }
        Command::Backup { to, json } => {
            let db = Db::connect(&cli.database_url).await?;
            let result = crate::store::backup::snapshot(&db, &to).await;
            db.close().await;
            let done = result?;
            if json {
                print_json(json!({"file": to, "bytes": done.bytes, "ms": done.took.as_millis() as u64}));
            } else {
                eprintln!("backup written to {} ({} bytes in {:.1?})", to.display(), done.bytes, done.took);
            }
            Ok(())
        }
        Command::Restore { from, json } => {
            let db = Db::connect_and_migrate(&cli.database_url).await?;
            let result = crate::store::backup::restore(&db, &from).await;
            db.close().await;
            let done = result?;
            if json {
                print_json(json!({"tables": done.tables, "rows": done.rows, "ms": done.took.as_millis() as u64}));
            } else {
                eprintln!(
                    "restored {} rows in {} tables from {} in {:.1?}",
                    done.rows,
                    done.tables,
                    from.display(),
                    done.took
                );
            }
            Ok(())
        }
        Command::Spots(cmd) => {
            let db = Db::connect_and_migrate(&cli.database_url).await?;
            let result = spots_command(&db, cmd).await;
            db.close().await;
            result
        }
        Command::Members(cmd) => {
            let db = Db::connect_and_migrate(&cli.database_url).await?;
            let result = members_command(&db, cmd).await;
            db.close().await;
            result
        }
        Command::Kaizala(cmd) => {
            let db = Db::connect_and_migrate(&cli.database_url).await?;
            let result = kaizala_command(&db, cmd).await;
            db.close().await;
            result
        }
        Command::Outbox(cmd) => {
            let db = Db::connect_and_migrate(&cli.database_url).await?;
            let result = outbox_command(&db, cmd).await;
            db.close().await;
            result
        }
        Command::Admins(cmd) => {
            let db = Db::connect_and_migrate(&cli.database_url).await?;
            let result = admins_command(&db, cmd).await;
            db.close().await;
            result
        }
    }
}

async fn admins_command(db: &Db, cmd: AdminsCommand) -> anyhow::Result<()> {
    match cmd {
        AdminsCommand::SetPassword { spot, email, json } => {
            let password = read_password()?;
            crate::domain::console::set_password(db, spot, &email, &password).await?;
            if json {
                print_json(json!({"spotId": spot, "email": email, "passwordSet": true}));
            } else {
                println!("console password set for {email} in spot {spot}");
            }
        }
        AdminsCommand::LoginLink { spot, email, public_url, json } => {
            let token = crate::domain::console::create_login_link(db, spot, &email).await?;
            let url = format!("{}{}", public_url.trim_end_matches('/'), crate::domain::console::link_path(&token));
            if json {
                print_json(json!({"spotId": spot, "email": email, "url": url}));
            } else {
                println!("{url}\n(valid 15 minutes, once)");
            }
        }
    }
    Ok(())
}

/// A password from standard input: one line when piped, or typed at a prompt on a
/// terminal with echo turned off (`stty`) while it is typed.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success())
    };
    let hidden = terminal && {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        stty("-echo")
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if hidden {
        stty("echo");
        eprintln!();
    }
    read.context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!password.is_empty(), "no password given on standard input");
    Ok(password)
}

async fn outbox_command(db: &Db, cmd: OutboxCommand) -> anyhow::Result<()> {
    match cmd {
        OutboxCommand::List { spot, state, channel, event, limit, json } => {
            let filter = outbox::Filter {
                spot_id: spot,
                event_id: event,
                states: state.into_iter().collect(),
                channel,
                id: None,
            };
            let items = outbox::list(db, &filter, limit).await?;
            if json {
                print_json(json!({ "items": items }));
            } else if items.is_empty() {
                println!("no outbox rows");
            } else {
                for i in items {
                    let last = match (i.last_status, &i.last_error) {
                        (_, Some(e)) => format!("  ({e})"),
                        (Some(s), None) => format!("  (last status {s})"),
                        (None, None) => String::new(),
                    };
                    println!(
                        "{}  {}  {}  {}  {}  attempts {}  event {}{last}",
                        i.id, i.spot_id, i.channel, i.event_type, i.state, i.attempts, i.event_id
                    );
                }
            }
        }
        OutboxCommand::Retry { id, event, failed, skipped, spot, json } => {
            let mut states = Vec::new();
            if failed {
                states.push(OutboxState::Failed);
            }
            if skipped {
                states.push(OutboxState::Skipped);
            }
            let filter = outbox::Filter { spot_id: spot, id, event_id: event, states, channel: None };
            let n = outbox::retry(db, &filter).await?;
            if json {
                print_json(json!({ "requeued": n }));
            } else {
                println!("requeued {n} row(s)");
            }
        }
    }
    Ok(())
}

async fn members_command(db: &Db, cmd: MembersCommand) -> anyhow::Result<()> {
    let MembersCommand::Import { spot, file, dry_run, groups, errors, notify, json } = cmd;
    let unusable = |e: crate::error::Error| anyhow::Error::new(UnusableFile(e.to_string()));
    let cannot_read =
        |e: std::io::Error| anyhow::Error::new(UnusableFile(format!("cannot read {}: {e}", file.display())));
    let size = std::fs::metadata(&file).map_err(cannot_read)?.len();
    if size > import::CLI_LIMITS.file_bytes {
        return Err(anyhow::Error::new(UnusableFile(format!(
            "{} is larger than {} GiB, the most an import reads",
            file.display(),
            import::CLI_LIMITS.file_bytes >> 30
        ))));
    }
    let bytes = std::fs::read(&file).map_err(cannot_read)?;
    let rows =
        import::read_rows(&bytes, &import::CLI_LIMITS).map_err(|e| anyhow::Error::new(UnusableFile(e.to_string())))?;
    drop(bytes);
    crate::domain::spots::get_spot(db, spot).await?;
    import::prepare(db, spot, &rows, &groups).await.map_err(unusable)?;
    let total = rows.len().saturating_sub(1) as u64;
    let bar = if !json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let progress = {
        let bar = bar.clone();
        move |done: u64| {
            if let Some(b) = &bar {
                b.set_position(done);
            }
        }
    };
    let started = std::time::Instant::now();
    let report = import::import_rows(db, spot, &rows, &groups, dry_run, notify, &progress).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(path) = errors {
        std::fs::write(&path, import::failed_rows_csv(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        let failed: Vec<serde_json::Value> =
            report.failed.iter().map(|f| json!({"line": f.line, "email": f.email, "reason": f.reason})).collect();
        print_json(json!({"created": report.created, "updated": report.updated, "failed": failed}));
    } else {
        eprintln!(
            "{}{} created, {} updated, {} failed ({} rows in {:.1}s)",
            if dry_run { "dry run: would have " } else { "" },
            report.created,
            report.updated,
            report.failed.len(),
            total,
            started.elapsed().as_secs_f64()
        );
        for f in report.failed.iter().take(20) {
            eprintln!("  line {}: {} — {}", f.line, f.email, f.reason);
        }
        if report.failed.len() > 20 {
            eprintln!("  … {} more (use --errors FILE)", report.failed.len() - 20);
        }
    }
    Ok(())
}

async fn kaizala_command(db: &Db, cmd: KaizalaCommand) -> anyhow::Result<()> {
    match cmd {
        KaizalaCommand::Connectors(ConnectorsCommand::Create { spot, name, json }) => {
            let (c, secret) = kaizala::create_connector(db, spot, &name).await?;
            if json {
                print_json(json!({"applicationId": c.id, "applicationSecret": secret}));
            } else {
                println!("applicationId:     {}\napplicationSecret: {secret}\n(the secret is shown only once)", c.id);
            }
        }
        KaizalaCommand::Connectors(ConnectorsCommand::List { spot, json }) => {
            let list = kaizala::list_connectors(db, spot).await?;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|c| json!({"applicationId": c.id, "spotId": c.spot_id, "name": c.name, "createdAt": c.created_at}))
                    .collect();
                print_json(json!({"connectors": items}));
            } else {
                for c in list {
                    println!("{}  spot {}  {}", c.id, c.spot_id, c.name);
                }
            }
        }
        KaizalaCommand::Connectors(ConnectorsCommand::Delete { application_id, json }) => {
            kaizala::delete_connector(db, application_id).await?;
            if json {
                print_json(json!({"applicationId": application_id, "deleted": true}));
            } else {
                println!("connector {application_id} deleted");
            }
        }
        KaizalaCommand::Tokens(TokensCommand::Create { application_id, mobile_number, json }) => {
            let (token, expiry) = kaizala::create_user_token(db, &application_id, &mobile_number).await?;
            if json {
                print_json(json!({"refreshToken": token, "refreshTokenExpiry": expiry}));
            } else {
                println!("refreshToken:       {token}\nrefreshTokenExpiry: {expiry}");
            }
        }
    }
    Ok(())
}

fn print_json(value: serde_json::Value) {
    println!("{value}");
}

async fn spots_command(db: &Db, cmd: SpotsCommand) -> anyhow::Result<()> {
    match cmd {
        SpotsCommand::Create { name, json } => {
            let (spot, key) = spots::create_spot(db, &name).await?;
            if json {
                print_json(json!({"spotId": spot.id, "apiKey": key}));
            } else {
                println!("spot:    {} ({})\napi key: {key}\n(the key is shown only once)", spot.id, spot.name);
            }
        }
        SpotsCommand::List { json } => {
            let list = spots::list_spots_with_member_counts(db).await?;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|(s, members)| {
                        json!({"spotId": s.id, "name": s.name, "members": members,
                               "rateLimitPer10s": s.rate_limit_per_10s, "rateLimitPerDay": s.rate_limit_per_day,
                               "createdAt": s.created_at})
                    })
                    .collect();
                print_json(json!({"spots": items}));
            } else {
                for (s, members) in list {
                    println!("{}  {}  ({members} members)", s.id, s.name);
                }
            }
        }
        SpotsCommand::RotateKey { spot_id, json } => {
            let key = spots::rotate_key(db, spot_id).await?;
            if json {
                print_json(json!({"spotId": spot_id, "apiKey": key}));
            } else {
                println!("new api key: {key}\n(the old key no longer works)");
            }
        }
        SpotsCommand::Delete { spot_id, json } => {
            spots::delete_spot(db, spot_id).await?;
            if json {
                print_json(json!({"spotId": spot_id, "deleted": true}));
            } else {
                println!("spot {spot_id} deleted");
            }
        }
        SpotsCommand::SetLimits { spot_id, per_10s, per_day, json } => {
            let s = spots::set_limits(db, spot_id, per_10s, per_day).await?;
            if json {
                print_json(json!({"spotId": s.id, "rateLimitPer10s": s.rate_limit_per_10s,
                                  "rateLimitPerDay": s.rate_limit_per_day}));
            } else {
                println!(
                    "spot {}: per-10s {:?}, per-day {:?} (None = server default)",
                    s.id, s.rate_limit_per_10s, s.rate_limit_per_day
                );
            }
        }
        SpotsCommand::Export { spot, to, json } => {
            let summary = if to == "-" {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                transfer::export_spot(db, spot, &mut out).await?
            } else {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&to)
                    .with_context(|| format!("cannot create {to} (an export never overwrites a file)"))?;
                let mut out = std::io::BufWriter::new(file);
                let summary = transfer::export_spot(db, spot, &mut out).await;
                if summary.is_err() {
                    drop(out);
                    let _ = std::fs::remove_file(&to);
                }
                summary?
            };
            report_transfer("exported", &summary, json && to != "-");
        }
        SpotsCommand::Import { from, json } => {
            let summary = if from == "-" {
                let stdin = std::io::stdin();
                transfer::import_spot(db, &mut stdin.lock()).await?
            } else {
                let file = std::fs::File::open(&from).with_context(|| format!("cannot open {from}"))?;
                transfer::import_spot(db, &mut std::io::BufReader::new(file)).await?
            };
            report_transfer("imported", &summary, json);
        }
        SpotsCommand::SetSender { spot_id, name, json } => {
            let name = crate::domain::email::set_sender_name(db, spot_id, Some(&name)).await?;
            if json {
                print_json(json!({"spotId": spot_id, "emailSenderName": name}));
            } else {
                match name {
                    Some(n) => println!("spot {spot_id}: invitation emails come from \"{n}\""),
                    None => println!("spot {spot_id}: invitation emails come from the spot's name"),
                }
            }
        }
    }
    Ok(())
}

/// What `spots export|import` did: JSON on stdout, or a summary on stderr (stdout may
/// be the export itself).
fn report_transfer(done: &str, summary: &transfer::Summary, json: bool) {
    if json {
        let kinds: serde_json::Map<String, serde_json::Value> =
            summary.by_kind.iter().map(|(k, n)| (k.to_string(), json!(n))).collect();
        print_json(json!({"spotId": summary.spot, done: summary.records, "byKind": kinds}));
    } else {
        let spot = summary.spot.map(|s| s.to_string()).unwrap_or_default();
        let kinds: Vec<String> = summary.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        eprintln!("spot {spot}: {done} {} records ({})", summary.records, kinds.join(", "));
    }
}

async fn serve(database_url: &str, args: ServeArgs) -> anyhow::Result<()> {
    let db = Db::connect_and_migrate(database_url).await?;
    tracing::info!(database = %redact_url(database_url), "database ready");
    // Bound before the configuration is built, so that port 0 (any free port) gives the
    // real address to the default public URL and to the `listening on` line.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let listen = listener.local_addr().with_context(|| format!("cannot read the address bound for {}", args.listen))?;
    let demo = args.demo;
    let config = serve_config(listen, args)?;
    crate::domain::groups::set_compute_lease(config.smart_group_lease);
    if demo {
        let (spot_id, key) = demo::seed(&db).await?;
        eprintln!("demo spot {spot_id}\ndemo API key: {key}");
        eprintln!("try: curl -H 'Authorization: {key}' {}/v1/spotMembers", config.public_url);
        // The demo's first member is its Admin (`domain::demo::seed`).
        let token = crate::domain::console::create_login_link(&db, spot_id, "ada@example.com").await?;
        eprintln!(
            "console (Ada Lovelace, Admin; one-time link, 15 minutes): {}{}",
            config.public_url,
            crate::domain::console::link_path(&token)
        );
    }
    tracing::info!(listen = %listen, public_url = %redact_url(&config.public_url), "openspot serving");
    let state = AppState::new(db.clone(), config)?;
    // One plain line whatever the log format, for scripts and tests that asked for port 0.
    eprintln!("listening on {listen}");
    crate::http::serve(state, listener, shutdown_signal()).await?;
    db.close().await;
    tracing::info!("openspot stopped");
    Ok(())
}

/// The server configuration from `serve`'s flags, for a server bound to `listen`.
fn serve_config(listen: SocketAddr, args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::new(listen, args.public_url);
    config.default_limits.per_10s = args.rate_limit_per_10s;
    config.default_limits.per_day = args.rate_limit_per_day;
    config.sms_webhook_url = args.sms_webhook_url;
    config.metrics_token_hash = args
        .metrics_token
        .filter(|t| !t.is_empty())
        .map(|t| <sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()).into());
    let email = *args.email;
    config.email = crate::config::EmailConfig {
        smtp_url: email.smtp_url,
        smtp_from: email.smtp_from,
        invitation_url: email.invitation_url,
    };
    config.allow_private_targets = args.allow_private_targets;
    config.trusted_proxies = crate::config::parse_trusted_proxies(&args.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
    config.server.header_read_timeout = std::time::Duration::from_secs(args.header_timeout_s.max(1));
    config.server.request_timeout = std::time::Duration::from_secs(args.request_timeout_s.max(1));
    config.server.import_timeout = std::time::Duration::from_secs(args.request_timeout_s.max(1) * 4);
    config.server.max_connections = args.max_connections.max(1);
    config.server.max_in_flight = args.max_in_flight.max(1);
    config.server.max_connections_per_address = args.max_connections_per_address.max(1);
    config.auth.pin_calls_per_address = args.pin_calls_per_address.max(1);
    config.auth.failed_auth_per_address = args.failed_auth_per_address.max(1);
    config.auth_cache_ttl = std::time::Duration::from_millis(args.auth_cache_ttl_ms);
    let outbox = &mut config.outbox;
    outbox.retry_schedule = crate::config::parse_retry_schedule(&args.webhook_retry_schedule)
        .map_err(|e| anyhow::anyhow!("--webhook-retry-schedule: {e}"))?;
    outbox.attempt_timeout = std::time::Duration::from_millis(args.webhook_timeout_ms);
    outbox.lease = std::time::Duration::from_millis(args.outbox_lease_ms);
    outbox.poll_interval = std::time::Duration::from_millis(args.outbox_poll_ms);
    outbox.max_in_flight = args.outbox_max_in_flight;
    outbox.max_in_flight_per_target = args.outbox_max_in_flight_per_target;
    outbox.retention = std::time::Duration::from_secs(args.outbox_retention_days.max(1) * 24 * 3600);
    outbox.check().map_err(|e| anyhow::anyhow!("outbox settings: {e}"))?;
    if args.smart_group_lease_ms < 1000 {
        anyhow::bail!("--smart-group-lease-ms: must be at least 1000 (a batch renews the claim)");
    }
    config.smart_group_lease = std::time::Duration::from_millis(args.smart_group_lease_ms);
    Ok(config)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["openspot", "serve"].iter().chain(flags)).unwrap();
        match cli.command {
            Command::Serve(args) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn the_auth_cache_lifetime_is_configurable() {
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        if std::env::var_os("OPENSPOT_AUTH_CACHE_TTL_MS").is_none() {
            let config = serve_config(bound, serve_args(&[])).unwrap();
            assert_eq!(config.auth_cache_ttl, crate::config::DEFAULT_AUTH_CACHE_TTL);
        }
        let config = serve_config(bound, serve_args(&["--auth-cache-ttl-ms", "200"])).unwrap();
        assert_eq!(config.auth_cache_ttl, std::time::Duration::from_millis(200));
    }

    #[test]
    fn outbox_settings_are_read_and_checked() {
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let config = serve_config(
            bound,
            serve_args(&[
                "--webhook-retry-schedule",
                "50ms,100ms",
                "--webhook-timeout-ms",
                "1000",
                "--outbox-lease-ms",
                "3000",
                "--outbox-max-in-flight",
                "1",
            ]),
        )
        .unwrap();
        let ms = std::time::Duration::from_millis;
        assert_eq!(config.outbox.retry_schedule, vec![ms(50), ms(100)]);
        assert_eq!((config.outbox.attempt_timeout, config.outbox.lease), (ms(1000), ms(3000)));
        assert_eq!(config.outbox.max_in_flight, 1);
        let err = serve_config(bound, serve_args(&["--webhook-retry-schedule", "5 minutes"])).unwrap_err();
        assert!(err.to_string().contains("--webhook-retry-schedule"), "{err}");
        let err = serve_config(bound, serve_args(&["--outbox-lease-ms", "11000"])).unwrap_err();
        assert!(err.to_string().contains("lease"), "{err}");
    }

    #[test]
    fn email_settings_are_read() {
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let flags =
            ["--smtp-url", "smtp://mx:2525", "--smtp-from", "hi@example.com", "--invitation-url", "{publicUrl}/i"];
        let config = serve_config(bound, serve_args(&flags)).unwrap();
        assert_eq!(config.email.smtp_url.as_deref(), Some("smtp://mx:2525"));
        assert_eq!(config.email.smtp_from.as_deref(), Some("hi@example.com"));
        assert_eq!(config.email.invitation_url, "{publicUrl}/i");
    }

    #[test]
    fn the_default_public_url_is_the_bound_address() {
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let args = serve_args(&["--listen", "127.0.0.1:0"]);
        if args.public_url.is_none() {
            assert_eq!(serve_config(bound, args).unwrap().public_url, "http://127.0.0.1:4321");
        }
    }
}
