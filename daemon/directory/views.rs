//! views: the directory joined with a user's coverage, for readers — why a
//! user is privileged, and their registration state (docs/labels.md,
//! "Registration").

use serde::Serialize;

use super::{DirectoryView, Registration};
use crate::coverage::{State, UserView};

/// A user's MFA registration, the directory's evidence joined with what
/// their sign-ins show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationState {
    /// `registered`, `not_registered`, `pending`, `overdue` or `unknown`.
    pub state: &'static str,
    /// Whose gap it is when the user is not covered: `policy` (an MFA method
    /// is registered and sign-ins are still single-factor: nothing asks for
    /// it), `user` (nothing registered), none when covered or unknown.
    pub gap: Option<&'static str>,
    /// What the state rests on.
    pub evidence: &'static str,
}

/// The registration state of a user (`coverage`: their coverage entry, when
/// they have signed in). Without directory evidence the sign-ins' failure
/// codes may still say pending or overdue; otherwise it is `unknown`, never a guess.
pub fn registration_state(directory: Registration, coverage: Option<&UserView>) -> RegistrationState {
    let pending = coverage.filter(|u| u.registration_pending);
    let single_factor = coverage.is_some_and(|u| u.state == State::Uncovered);
    let pending_state = |u: &UserView| if u.registration_overdue { "overdue" } else { "pending" };
    match directory {
        Registration::Registered => {
            RegistrationState { state: "registered", gap: single_factor.then_some("policy"), evidence: "directory" }
        }
        Registration::NotRegistered => RegistrationState {
            state: pending.map_or(Registration::NotRegistered.as_str(), pending_state),
            gap: Some("user"),
            evidence: "directory",
        },
        Registration::Unknown => match pending {
            Some(u) => RegistrationState {
                state: pending_state(u),
                gap: Some("user"),
                evidence: "sign-ins (registration required)",
            },
            None => RegistrationState { state: Registration::Unknown.as_str(), gap: None, evidence: "none" },
        },
    }
}

/// Why a user is privileged, in words: the list, and each privileged role held.
pub fn privileged_because(listed: bool, directory: Option<&DirectoryView>) -> Vec<String> {
    let mut out = Vec::new();
    if listed {
        out.push("listed in coverage.privileged".to_owned());
    }
    for role in directory.into_iter().flat_map(|d| &d.roles).filter(|r| r.privileged) {
        let since =
            role.since.as_deref().map_or_else(|| " (since before the seed)".to_owned(), |s| format!(" since {s}"));
        let until = role.until.as_deref().map(|u| format!(" until {u}")).unwrap_or_default();
        out.push(format!(
            "{} ({}){since}{until}, from the {}: {}",
            role.role, role.holding, role.evidence, role.operation
        ));
    }
    out
}
