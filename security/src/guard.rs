//! The decision on one HTTP request, from its request line and `Authorization` header only:
//! authenticate (401), classify (the component's [`Classifier`]), authorize (403) — and the
//! audit log line that records it.
//!
//! The decision is taken before any handler runs and looks nothing up, so neither a 401 nor a
//! 403 says whether the object named in the path exists.
//!
//! Audit lines go to the `tracing` target `audit` (level INFO), one per change (any method but
//! GET, HEAD and OPTIONS) and one per refused request, with the fields `component`,
//! `principal`, `method`, `path`, `action`, `object`, `decision` (`allowed`, `denied`,
//! `unauthenticated`) and `status`.

use std::path::Path;
use std::sync::Arc;

use crate::acls::{Acls, Action};
use crate::credentials::{Authentication, Credentials};
use crate::Error;

/// What a request needs, from its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health checks that load balancers call (no credentials asked).
    Open,
    /// Credentials, and no ACL action (e.g. `/version`, or a path no route serves: it is
    /// answered 401 before 404, so a 404 is only ever seen by principals).
    Authenticated,
    /// Credentials and the ACLs' permission for `action` on `object` (`None`: not in the
    /// request line).
    Action(Action, Option<String>),
}

/// A component's classification of a request (method, normalized path) into what it needs.
pub type Classifier = fn(method: &str, path: &str) -> Access;

/// The security settings of an API: `--credentials` and `--acls`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Who may call (`None`: no authentication, every caller is an anonymous *any*).
    pub credentials: Option<Credentials>,
    /// What they may do (the default allows everything).
    pub acls: Acls,
}

impl Policy {
    /// An open API: no credentials, everything allowed (still audit-logged).
    pub fn open() -> Policy {
        Policy::default()
    }

    /// From the files given to `--credentials` and `--acls`.
    pub fn load(credentials: Option<&Path>, acls: Option<&Path>) -> Result<Policy, Error> {
        Ok(Policy {
            credentials: credentials.map(Credentials::load).transpose()?,
            acls: acls.map(Acls::load).transpose()?.unwrap_or_default(),
        })
    }

    /// Whether callers must authenticate.
    pub fn requires_credentials(&self) -> bool {
        self.credentials.is_some()
    }
}

/// How a request was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served.
    Allowed,
    /// Authenticated, but the ACLs refuse it: 403.
    Denied,
    /// No or wrong credentials: 401.
    Unauthenticated,
}

impl Outcome {
    /// Its name in the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Unauthenticated => "unauthenticated",
        }
    }
}

/// The `WWW-Authenticate` header value of a 401.
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"plateau\"";

/// The decision on one request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Allowed, denied or unauthenticated.
    pub outcome: Outcome,
    /// Who asked (`None`: no credentials given, or none required).
    pub principal: Option<String>,
    /// The action the request is (`None`: open, or authentication only).
    pub action: Option<Action>,
    /// Its object, when the request line names one.
    pub object: Option<String>,
    /// The normalized path the decision was taken on.
    pub path: String,
}

impl Decision {
    /// The refusal to send instead of serving: (status, JSON body); `None` when allowed.
    pub fn rejection(&self) -> Option<(u16, String)> {
        let message = match self.outcome {
            Outcome::Allowed => return None,
            Outcome::Unauthenticated => {
                "authentication required: send HTTP Basic credentials or a bearer token".to_string()
            }
            Outcome::Denied => format!(
                "principal '{}' is not allowed to {}{}",
                self.principal.as_deref().unwrap_or("(anonymous)"),
                self.action
                    .map(Action::name)
                    .unwrap_or("call this endpoint"),
                self.object
                    .as_deref()
                    .map(|o| format!(" on '{o}'"))
                    .unwrap_or_default()
            ),
        };
        let status = if self.outcome == Outcome::Denied {
            403
        } else {
            401
        };
        Some((
            status,
            serde_json::json!({ "message": message }).to_string(),
        ))
    }

    /// Write the audit line when the request is a change or was refused.
    pub fn audit(&self, component: &str, method: &str, status: u16) {
        let change = !matches!(method, "GET" | "HEAD" | "OPTIONS");
        if !change && self.outcome == Outcome::Allowed {
            return;
        }
        tracing::info!(
            target: "audit",
            component,
            principal = self.principal.as_deref().unwrap_or("-"),
            method,
            path = %self.path,
            action = self.action.map(Action::name).unwrap_or("-"),
            object = self.object.as_deref().unwrap_or("-"),
            decision = self.outcome.name(),
            status,
            "audit"
        );
    }
}

/// Decides requests for one component.
#[derive(Clone)]
pub struct Guard {
    component: &'static str,
    policy: Arc<Policy>,
    classify: Classifier,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("component", &self.component)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Guard {
    /// A guard for `component` (its name in the audit log) with `policy`.
    pub fn new(component: &'static str, policy: Arc<Policy>, classify: Classifier) -> Guard {
        Guard {
            component,
            policy,
            classify,
        }
    }

    /// The component's name.
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decide on a request from its method, raw path and `Authorization` header.
    pub fn decide(&self, method: &str, raw_path: &str, authorization: Option<&[u8]>) -> Decision {
        let path = normalize_path(raw_path);
        let access = (self.classify)(method, &path);
        let mut decision = Decision {
            outcome: Outcome::Allowed,
            principal: None,
            action: None,
            object: None,
            path,
        };
        let (action, object) = match access {
            Access::Open => return decision,
            Access::Authenticated => (None, None),
            Access::Action(action, object) => (Some(action), object),
        };
        decision.action = action;
        decision.object = object;
        if let Some(credentials) = &self.policy.credentials {
            match credentials.authenticate(authorization) {
                Authentication::Principal(p) => decision.principal = Some(p),
                Authentication::Missing | Authentication::Invalid => {
                    decision.outcome = Outcome::Unauthenticated;
                    return decision;
                }
            }
        }
        if let Some(action) = action {
            if !self.policy.acls.is_allowed(
                decision.principal.as_deref(),
                action,
                decision.object.as_deref(),
            ) {
                decision.outcome = Outcome::Denied;
            }
        }
        decision
    }
}

/// The path a decision is taken on: percent-decoded, repeated slashes collapsed, `.` and `..`
/// segments resolved (so that `/v2/apps/dev/../prod` is judged as `/v2/apps/prod`). A path
/// that does not decode to UTF-8 is kept as given (it then matches no rule's value).
pub fn normalize_path(raw: &str) -> String {
    let decoded = percent_decode(raw).unwrap_or_else(|| raw.to_string());
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn percent_decode(raw: &str) -> Option<String> {
    if !raw.contains('%') {
        return Some(raw.to_string());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::credentials::basic_header;

    fn classify(method: &str, path: &str) -> Access {
        match (method, path) {
            (_, "/ping") => Access::Open,
            ("GET", p) if p.starts_with("/v2/apps/") => {
                Access::Action(Action::ViewApps, Some(p["/v2/apps".len()..].to_string()))
            }
            (_, p) if p.starts_with("/v2/apps/") => {
                Access::Action(Action::UpdateApps, Some(p["/v2/apps".len()..].to_string()))
            }
            _ => Access::Authenticated,
        }
    }

    /// Two principals, `ci` and `ops`; only `ops` may change apps (shared with the
    /// middleware's tests).
    pub(crate) fn test_policy() -> Policy {
        Policy {
            credentials: Some(
                Credentials::from_json(
                    r#"{"credentials":[{"principal":"ci","secret":"a"},{"principal":"ops","secret":"b"}]}"#,
                )
                .unwrap(),
            ),
            acls: Acls::from_json(
                r#"{"update_apps":[{"principals":{"values":["ops"]},"apps":{"type":"ANY"}},
                                   {"principals":{"type":"ANY"},"apps":{"type":"NONE"}}]}"#,
            )
            .unwrap(),
        }
    }

    fn guard() -> Guard {
        let policy = test_policy();
        Guard::new("test", Arc::new(policy), classify)
    }

    #[test]
    fn authenticate_then_authorize_on_the_request_line() {
        let g = guard();
        let ci = basic_header("ci", "a");
        let ops = basic_header("ops", "b");
        let decide = |m, p, h: Option<&str>| g.decide(m, p, h.map(str::as_bytes));
        assert_eq!(decide("GET", "/ping", None).outcome, Outcome::Allowed);
        assert_eq!(
            decide("GET", "/v2/info", None).outcome,
            Outcome::Unauthenticated
        );
        assert_eq!(
            decide("GET", "/no/such/page", Some("Bearer z")).outcome,
            Outcome::Unauthenticated
        );
        assert_eq!(
            decide("GET", "/no/such/page", Some(&ci)).outcome,
            Outcome::Allowed
        );
        let d = decide("PUT", "/v2/apps/prod/web", Some(&ci));
        assert_eq!(
            (d.outcome, d.principal.as_deref()),
            (Outcome::Denied, Some("ci"))
        );
        assert_eq!(d.object.as_deref(), Some("/prod/web"));
        let (status, body) = d.rejection().unwrap();
        assert_eq!(status, 403);
        assert!(
            body.contains("not allowed to update_apps on '/prod/web'"),
            "{body}"
        );
        assert_eq!(
            decide("PUT", "/v2/apps/prod/web", Some(&ops)).outcome,
            Outcome::Allowed
        );
        assert_eq!(
            decide("GET", "/v2/apps/prod/web", Some(&ci)).outcome,
            Outcome::Allowed
        );
        let (status, _) = decide("DELETE", "/v2/apps/x", None).rejection().unwrap();
        assert_eq!(status, 401);
    }

    #[test]
    fn paths_are_normalized_before_they_are_judged() {
        assert_eq!(
            normalize_path("/v2/apps/dev/../prod//web/"),
            "/v2/apps/prod/web"
        );
        assert_eq!(normalize_path("/v2/apps/%70rod/./web"), "/v2/apps/prod/web");
        assert_eq!(normalize_path("//ping"), "/ping");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path("/a%zz"), "/a%zz");
        assert_eq!(normalize_path("/a%ff"), "/a%ff");
        assert_eq!(normalize_path("/%"), "/%");
    }

    #[test]
    fn an_open_policy_allows_everything_without_credentials() {
        let g = Guard::new("test", Arc::new(Policy::open()), classify);
        let d = g.decide("DELETE", "/v2/apps/x", None);
        assert_eq!((d.outcome, d.principal), (Outcome::Allowed, None));
    }
}
