//! Invitation emails (issue 14, contract §5): `withEmailNotification: true` on a member
//! or course invitation (single, bulk, import) queues one email per member in the
//! transaction of the invitation; the outbox dispatcher sends it through the operator's
//! SMTP relay (`OPENSPOT_SMTP_URL`) with the outbox's retries.
//!
//! An email is an outbox row of channel `Email` with no target: event type
//! `invitation.spot` or `invitation.course`, payload [`InvitationPayload`] (what the
//! message needs, so a retry sends the same message without reading anything). A member
//! without an email address gets a row written Skipped; without a relay configured the
//! dispatcher records every email Skipped ("OPENSPOT_SMTP_URL is not set"). Nothing is
//! dropped silently: `openspot outbox list --channel Email` shows them all.
//!
//! The relay is the operator's, so it is not subject to the private-target rule of
//! outbound calls (`outbound.rs`); TLS is rustls (no OpenSSL).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::{CourseId, MemberId, SpotId};
use super::members::Member;
use super::outbox::{Attempted, BoxFuture, Channel, Outcome};
use super::vocab::{ChannelKind, OutboxState};
use super::{new_id, now_ms};
use crate::config::Config;
use crate::error::{Entity, Error, Result};
use crate::store::outbox::{NewOutboxRow, OutboxRow};
use crate::store::{self, redact_url, Db, Tx};

/// Event type of an invitation to a spot.
pub const INVITATION_SPOT: &str = "invitation.spot";
/// Event type of an invitation to a course.
pub const INVITATION_COURSE: &str = "invitation.course";
/// One SMTP exchange (connection, dialogue, message) must end within this.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Why an email is recorded as skipped when no relay is configured.
pub const NO_RELAY: &str = "OPENSPOT_SMTP_URL is not set";
/// Why an email is recorded as skipped when its member has no email address.
pub const NO_ADDRESS: &str = "member has no email address";
/// The longest sender name kept (characters).
pub const MAX_SENDER_NAME: usize = 100;

/// What a member is invited to.
#[derive(Clone, Copy, Debug)]
pub enum Invitation<'a> {
    Spot,
    Course { course_id: CourseId, title: &'a str },
}

/// The data of one invitation email, stored as the outbox row's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationPayload {
    pub to: Option<String>,
    pub member_id: MemberId,
    pub firstname: String,
    pub lastname: String,
    pub sender_name: String,
    pub spot: SpotRef,
    pub course: Option<CourseRef>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpotRef {
    pub id: SpotId,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CourseRef {
    pub id: CourseId,
    pub title: String,
}

/// Queues one invitation email per member, inside the caller's transaction (so an
/// invitation that rolls back sends nothing). Members without an email address get a
/// row written Skipped with the reason.
pub async fn queue_invitations(tx: &mut Tx, spot_id: SpotId, what: Invitation<'_>, members: &[&Member]) -> Result<()> {
    if members.is_empty() {
        return Ok(());
    }
    let (spot_name, sender) =
        store::spots::get_email_sender(tx.ex(), spot_id).await?.ok_or(Error::NotFound(Entity::Spot))?;
    let sender_name = sender.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| spot_name.clone());
    let (event_type, course) = match what {
        Invitation::Spot => (INVITATION_SPOT, None),
        Invitation::Course { course_id, title } => {
            (INVITATION_COURSE, Some(CourseRef { id: course_id, title: title.to_string() }))
        }
    };
    let now = now_ms();
    let mut rows = Vec::with_capacity(members.len());
    for m in members {
        let to = m.email.clone().filter(|e| !e.trim().is_empty());
        let (state, last_error) =
            if to.is_some() { (OutboxState::Pending, None) } else { (OutboxState::Skipped, Some(NO_ADDRESS.into())) };
        let payload = InvitationPayload {
            to,
            member_id: m.id,
            firstname: m.firstname.clone(),
            lastname: m.lastname.clone(),
            sender_name: sender_name.clone(),
            spot: SpotRef { id: spot_id, name: spot_name.clone() },
            course: course.clone(),
        };
        rows.push(NewOutboxRow {
            id: new_id(),
            event_id: new_id(),
            channel: ChannelKind::Email,
            target_id: None,
            event_type: event_type.to_string(),
            payload: serde_json::to_string(&payload).map_err(|e| Error::Internal(e.into()))?,
            occurred_at: now,
            state,
            last_error,
        });
    }
    store::outbox::insert_many(tx.ex(), spot_id, &rows, now).await?;
    tx.note_outbox_write();
    Ok(())
}

/// `openspot spots set-sender`: the display name of the spot's invitation emails
/// (None or blank: the spot's name).
pub async fn set_sender_name(db: &Db, spot_id: SpotId, name: Option<&str>) -> Result<Option<String>> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    if let Some(n) = name {
        if n.chars().count() > MAX_SENDER_NAME {
            return Err(Error::invalid("name", format!("must be at most {MAX_SENDER_NAME} characters")));
        }
        if n.chars().any(char::is_control) {
            return Err(Error::invalid("name", "must not contain control characters"));
        }
    }
    let mut tx = db.begin().await?;
    if !store::spots::set_email_sender_name(tx.ex(), spot_id, name).await? {
        return Err(Error::NotFound(Entity::Spot));
    }
    tx.commit().await?;
    Ok(name.map(str::to_string))
}

/// How the connection to the relay is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (`smtp://`, or `?tls=none`).
    None,
    /// STARTTLS, refusing a relay that does not offer it (`?tls=starttls` or `required`).
    StartTlsRequired,
    /// STARTTLS when offered (`?tls=opportunistic`).
    StartTlsOpportunistic,
    /// TLS from the first byte (`smtps://`).
    Wrapper,
}

/// An SMTP relay, from `OPENSPOT_SMTP_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// User name and password (percent-decoded from the URL's userinfo).
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// Parses an SMTP relay URL: `smtp://host[:port]` (plain, port 25),
/// `smtp://host?tls=starttls` (or `required`; port 587), `?tls=opportunistic` (587),
/// `?tls=none`, `smtps://host[:port]` (implicit TLS, 465); `user:password@` gives
/// credentials. Errors name the URL with its password hidden.
pub fn parse_smtp_url(raw: &str) -> std::result::Result<SmtpSettings, String> {
    let raw = raw.trim();
    let shown = redact_url(raw);
    let bad = |why: &str| format!("invalid SMTP URL '{shown}': {why}");
    let url = reqwest::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    let implicit_tls = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => return Err(bad(&format!("the scheme must be smtp or smtps, not '{other}'"))),
    };
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        _ => return Err(bad("it names no host")),
    };
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(bad("it must have no path or fragment"));
    }
    let mut tls = if implicit_tls { SmtpTls::Wrapper } else { SmtpTls::None };
    let mut seen_tls = false;
    for (key, value) in url.query_pairs() {
        if key != "tls" || seen_tls {
            return Err(bad(&format!("unknown or repeated parameter '{key}' (only tls is read)")));
        }
        seen_tls = true;
        if implicit_tls {
            return Err(bad("smtps:// always uses TLS; tls= applies to smtp:// only"));
        }
        tls = match value.to_ascii_lowercase().as_str() {
            "starttls" | "required" => SmtpTls::StartTlsRequired,
            "opportunistic" => SmtpTls::StartTlsOpportunistic,
            "none" => SmtpTls::None,
            other => return Err(bad(&format!("tls must be starttls, required, opportunistic or none, not '{other}'"))),
        };
    }
    let port = url.port().unwrap_or(match tls {
        SmtpTls::None => 25,
        SmtpTls::StartTlsRequired | SmtpTls::StartTlsOpportunistic => 587,
        SmtpTls::Wrapper => 465,
    });
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        ("", Some(_)) => return Err(bad("a password needs a user name")),
        (user, password) => Some((
            percent_decode(user).ok_or_else(|| bad("the user name is not valid percent-encoded UTF-8"))?,
            percent_decode(password.unwrap_or_default())
                .ok_or_else(|| bad("the password is not valid percent-encoded UTF-8"))?,
        )),
    };
    Ok(SmtpSettings { host, port, tls, credentials })
}

/// Decodes `%XX` escapes (as in a URL's userinfo); None when the result is not UTF-8
/// or an escape is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The host of `--public-url` (`localhost` when it has none).
fn public_host(public_url: &str) -> String {
    reqwest::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string()))
        .unwrap_or_else(|| "localhost".into())
}

/// Delivers `Email` outbox rows through the SMTP relay; without one, records them Skipped.
pub struct EmailChannel {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Address,
    invitation_url: String,
    public_url: String,
    /// The public URL's host: the domain of Message-IDs.
    host: String,
}

impl EmailChannel {
    /// The channel of `cfg.email`: fails at start-up on an invalid SMTP URL or sender
    /// address. Needs a Tokio runtime (the connection pool runs on it).
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let host = public_host(&cfg.public_url);
        let from = match &cfg.email.smtp_from {
            Some(f) => {
                f.trim().parse::<Address>().map_err(|e| anyhow::anyhow!("invalid OPENSPOT_SMTP_FROM '{f}': {e}"))?
            }
            None => Address::new("openspot", &host).or_else(|_| Address::new("openspot", "localhost"))?,
        };
        let transport = match cfg.email.smtp_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(raw) => Some(build_transport(
                &parse_smtp_url(raw).map_err(anyhow::Error::msg)?,
                &host,
                cfg.outbox.max_in_flight_per_target,
            )?),
        };
        Ok(EmailChannel {
            transport,
            from,
            invitation_url: cfg.email.invitation_url.clone(),
            public_url: cfg.public_url.clone(),
            host,
        })
    }

    /// Whether a relay is configured (otherwise every email is recorded Skipped).
    pub fn has_relay(&self) -> bool {
        self.transport.is_some()
    }

    /// The invitation link of `p`.
    pub fn link(&self, p: &InvitationPayload) -> String {
        self.invitation_url
            .replace("{publicUrl}", &self.public_url)
            .replace("{spotId}", &p.spot.id.to_string())
            .replace("{memberId}", &p.member_id.to_string())
            .replace("{courseId}", &p.course.as_ref().map(|c| c.id.to_string()).unwrap_or_default())
    }

    /// The message of row `event_id` with payload `p`.
    pub fn message(&self, event_id: Uuid, p: &InvitationPayload) -> std::result::Result<Message, String> {
        let to = p.to.as_deref().ok_or(NO_ADDRESS)?;
        let to: Address = to.parse().map_err(|e| format!("the address '{to}' cannot be used: {e}"))?;
        let recipient = Some(format!("{} {}", p.firstname, p.lastname).trim().to_string()).filter(|n| !n.is_empty());
        let (text, html) = render(p, &self.link(p));
        Message::builder()
            .from(Mailbox::new(Some(p.sender_name.clone()), self.from.clone()))
            .to(Mailbox::new(recipient, to))
            .subject(subject(p))
            .message_id(Some(format!("<{event_id}@{}>", self.host)))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    async fn send(&self, row: &OutboxRow) -> Outcome {
        let Some(transport) = &self.transport else {
            return Outcome::Skip(NO_RELAY.into());
        };
        let started = Instant::now();
        let failed = |error: String, status: Option<u16>| Attempted {
            status,
            duration_ms: started.elapsed().as_millis() as i64,
            response: None,
            error: Some(error),
        };
        let payload: InvitationPayload = match serde_json::from_str(&row.payload) {
            Ok(p) => p,
            Err(e) => return Outcome::Fail(failed(format!("unreadable email payload: {e}"), None)),
        };
        if payload.to.is_none() {
            return Outcome::Skip(NO_ADDRESS.into());
        }
        let message = match self.message(row.event_id, &payload) {
            Ok(m) => m,
            Err(e) => return Outcome::Fail(failed(e, None)),
        };
        match transport.send(message).await {
            Ok(reply) => Outcome::Delivered(Attempted {
                status: Some(u16::from(reply.code())),
                duration_ms: started.elapsed().as_millis() as i64,
                response: reply.first_line().map(|l| l.chars().take(1024).collect()),
                error: None,
            }),
            Err(e) => {
                let status = e.status().map(u16::from);
                if e.is_permanent() {
                    Outcome::Fail(failed(format!("the SMTP relay refused the email: {e}"), status))
                } else {
                    Outcome::Retry(failed(format!("SMTP: {e}"), status))
                }
            }
        }
    }
}

impl Channel for EmailChannel {
    fn attempt<'a>(&'a self, _db: &'a Db, row: &'a OutboxRow) -> BoxFuture<'a, Outcome> {
        Box::pin(self.send(row))
    }

    /// Emails have no target to disable (a failed email fails alone).
    fn disable<'a>(
        &'a self,
        _tx: &'a mut Tx,
        _spot_id: SpotId,
        _target: Uuid,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The relay's transport: at most `connections` open SMTP connections, as many as the
/// dispatcher sends messages at once (the relay counts as one target).
fn build_transport(
    s: &SmtpSettings,
    hello: &str,
    connections: usize,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let tls = match s.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTlsRequired => Tls::Required(TlsParameters::new(s.host.clone())?),
        SmtpTls::StartTlsOpportunistic => Tls::Opportunistic(TlsParameters::new(s.host.clone())?),
        SmtpTls::Wrapper => Tls::Wrapper(TlsParameters::new(s.host.clone())?),
    };
    let hello_name = match hello.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => ClientId::Ipv4(a),
        Ok(IpAddr::V6(a)) => ClientId::Ipv6(a),
        Err(_) => ClientId::Domain(hello.to_string()),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT))
        .hello_name(hello_name)
        .pool_config(PoolConfig::new().max_size(u32::try_from(connections).unwrap_or(u32::MAX)));
    if let Some((user, password)) = &s.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

fn subject(p: &InvitationPayload) -> String {
    match &p.course {
        None => format!("You're invited to join {}", p.spot.name),
        Some(c) => format!("You're invited to {} on {}", c.title, p.spot.name),
    }
}

/// The plain-text and HTML bodies.
fn render(p: &InvitationPayload, link: &str) -> (String, String) {
    let greeting = if p.firstname.trim().is_empty() { "Hello,".to_string() } else { format!("Hello {},", p.firstname) };
    let what = match &p.course {
        None => format!("You're invited to join {} on openspot.", p.spot.name),
        Some(c) => format!("You're invited to the course \"{}\" on {}.", c.title, p.spot.name),
    };
    let ignore = "If you did not expect this invitation, you can ignore this email.";
    let text = format!("{greeting}\n\n{what}\n\nAccept the invitation: {link}\n\n{ignore}\n\n-- \n{}\n", p.sender_name);
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>{}</p>\n<p>{}</p>\n<p><a href=\"{}\">Accept the invitation</a><br>{}</p>\n\
         <p>{ignore}</p>\n<p>&mdash;<br>{}</p>\n</body></html>\n",
        escape(&greeting),
        escape(&what),
        escape(link),
        escape(link),
        escape(&p.sender_name)
    );
    (text, html)
}

/// Escapes text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse() {
        let s = parse_smtp_url("smtp://mail.example.com").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls, s.credentials), ("mail.example.com", 25, SmtpTls::None, None));
        let s = parse_smtp_url("smtps://user:p%40ss%3Aw@mail.example.com:2465").unwrap();
        assert_eq!((s.port, s.tls), (2465, SmtpTls::Wrapper));
        assert_eq!(s.credentials, Some(("user".into(), "p@ss:w".into())));
        assert_eq!(parse_smtp_url("smtps://u:p@mx").unwrap().port, 465);
        let s = parse_smtp_url("smtp://mx?tls=starttls").unwrap();
        assert_eq!((s.port, s.tls), (587, SmtpTls::StartTlsRequired));
        assert_eq!(parse_smtp_url("smtp://mx:2525?tls=required").unwrap().tls, SmtpTls::StartTlsRequired);
        assert_eq!(parse_smtp_url("smtp://mx?tls=opportunistic").unwrap().tls, SmtpTls::StartTlsOpportunistic);
        assert_eq!(
            parse_smtp_url("smtp://mx:2525?tls=none").unwrap(),
            SmtpSettings { host: "mx".into(), port: 2525, tls: SmtpTls::None, credentials: None }
        );
        assert_eq!(parse_smtp_url("smtp://[::1]:1025").unwrap().host, "::1");
        assert_eq!(parse_smtp_url(" smtp://127.0.0.1:1025/ ").unwrap().port, 1025);
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_their_password() {
        for bad in [
            "http://mx",
            "smtp://",
            "smtp://u:secret@mx?tls=maybe",
            "smtp://u:secret@mx?port=1",
            "smtps://u:secret@mx?tls=starttls",
            "smtp://u:secret@mx/path",
            "smtp://:secret@mx",
            "smtp://u:secret%ff@mx",
            "not a url",
        ] {
            let err = parse_smtp_url(bad).unwrap_err();
            assert!(!err.contains("secret"), "{bad}: {err}");
            assert!(err.starts_with("invalid SMTP URL"), "{bad}: {err}");
        }
        assert!(parse_smtp_url("smtp://u:secret@mx?tls=maybe").unwrap_err().contains("u:****@mx"));
        assert!(!format!("{:?}", parse_smtp_url("smtp://u:secret@mx").unwrap()).contains("secret"));
    }

    fn payload(course: Option<CourseRef>) -> InvitationPayload {
        InvitationPayload {
            to: Some("ann@example.com".into()),
            member_id: MemberId::generate(),
            firstname: "Ann <b>".into(),
            lastname: "Lee".into(),
            sender_name: "Acme & Co".into(),
            spot: SpotRef { id: SpotId::generate(), name: "Acme".into() },
            course,
        }
    }

    #[test]
    fn bodies_name_the_spot_the_course_and_the_link_and_escape_html() {
        let p = payload(Some(CourseRef { id: CourseId::generate(), title: "Rust <101>".into() }));
        let (text, html) = render(&p, "https://x.example/i/1?a=1&b=2");
        assert!(text.contains("Hello Ann <b>,") && text.contains("\"Rust <101>\" on Acme"));
        assert!(text.contains("https://x.example/i/1?a=1&b=2") && text.contains("ignore this email"));
        assert!(html.contains("Ann &lt;b&gt;") && html.contains("Rust &lt;101&gt;") && html.contains("Acme &amp; Co"));
        assert!(html.contains("href=\"https://x.example/i/1?a=1&amp;b=2\"") && html.contains("ignore this email"));
        assert_eq!(subject(&p), "You're invited to Rust <101> on Acme");
        assert_eq!(subject(&payload(None)), "You're invited to join Acme");
    }

    #[tokio::test]
    async fn links_fill_the_template() {
        let mut cfg = Config::new("127.0.0.1:8080".parse().unwrap(), Some("https://spots.example/".into()));
        cfg.email.invitation_url = "{publicUrl}/s/{spotId}/m/{memberId}/c/{courseId}".into();
        let ch = EmailChannel::new(&cfg).unwrap();
        assert!(!ch.has_relay());
        assert_eq!(ch.from.to_string(), "openspot@spots.example");
        let p = payload(None);
        assert_eq!(ch.link(&p), format!("https://spots.example/s/{}/m/{}/c/", p.spot.id, p.member_id));
        let m = ch.message(Uuid::nil(), &p).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("Message-ID: <00000000-0000-0000-0000-000000000000@spots.example>"), "{raw}");
        assert!(raw.contains("multipart/alternative"));
        cfg.email.smtp_url = Some("ftp://u:pw@mx".into());
        assert!(EmailChannel::new(&cfg).err().unwrap().to_string().contains("u:****@mx"));
        cfg.email.smtp_url = Some("smtp://127.0.0.1:2525".into());
        assert!(EmailChannel::new(&cfg).unwrap().has_relay());
        cfg.public_url = "http://127.0.0.1:8080".into();
        assert!(EmailChannel::new(&cfg).is_ok());
    }
}
