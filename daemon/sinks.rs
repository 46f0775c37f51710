//! sinks: the seam where a classified sign-in leaves the pipeline, and how a
//! sink with state takes part in the checkpoint (DESIGN.md, "Sinks and the
//! checkpoint").
//!
//! Coverage and metrics are the pipeline's own stages; every other sink
//! (alerts, history) implements [`Sink`] and is handed each sign-in, in the
//! order the sinks were built. A sink owns what it makes and never touches
//! offsets: at a checkpoint it is asked to make its effects durable
//! ([`Sink::prepare`]) before the snapshot is renamed, hands over the state it
//! keeps in the snapshot, and hears when that snapshot is durable
//! ([`Sink::committed`]). On start it is rebuilt from that state and the
//! snapshot's checkpoint number, and discards anything a checkpoint numbered
//! higher left behind.

use crate::classify::Verdict;
use crate::coverage::{Accounts, Coverage};
use crate::decode::SignIn;
use crate::source::Position;

/// One classified sign-in, as every sink sees it.
pub struct SignInEvent<'e, 'a> {
    pub record: &'e SignIn<'a>,
    pub verdict: &'e Verdict<'a>,
    /// Where its message came from, and its index in the message.
    pub position: &'e Position,
    pub index: usize,
    /// The user is on the privileged list / is a break-glass account.
    pub privileged: bool,
    pub excluded: bool,
}

/// A stage after classify that keeps what it makes.
pub trait Sink: Send {
    /// Its name: the key of its state in the snapshot, and in logs.
    fn name(&self) -> &'static str;

    /// One sign-in. Must not block on I/O: work that waits goes to the
    /// sink's own thread.
    fn sign_in(&mut self, event: &SignInEvent<'_, '_>);

    /// A look at the whole coverage state, before each checkpoint (e.g. who
    /// has become registration_overdue as the window moved).
    fn review(&mut self, _coverage: &Coverage, _accounts: &Accounts) {}

    /// Makes everything durable that checkpoint `seq` will stand for, and
    /// returns the state to keep in its snapshot (`None`: nothing to keep).
    /// An error leaves the sink able to try again with the same `seq`.
    fn prepare(&mut self, seq: u64) -> anyhow::Result<Option<Vec<u8>>>;

    /// The snapshot of checkpoint `seq` is durable.
    fn committed(&mut self, _seq: u64) {}
}
