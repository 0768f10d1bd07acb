//! The embedded broker's group coordinator: Kafka's classic group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch) and the APIs that describe
//! groups (DescribeGroups, ListGroups, DeleteGroups), as Apache Kafka's coordinator serves them.
//!
//! tansu 0.6's coordinator answers a JoinGroup at once instead of waiting for the group's
//! members to join, pauses 3 s on each join and sync of a static member to let the others
//! catch up, never expires a static member that stops heartbeating (so a group whose member
//! stalled could stay mid-rebalance until the broker restarted), and describes groups without
//! their members, hosts or state. This one keeps each group's state in memory, as Kafka's
//! coordinator does (committed offsets stay in the broker's storage):
//!
//! - **Empty → PreparingRebalance → CompletingRebalance → Stable.** A rebalance waits until
//!   every member has joined again, or until the longest rebalance timeout has passed; then the
//!   generation moves on, the leader gets every member's subscription and the others none, and
//!   the leader's SyncGroup hands each member its assignment.
//! - **Sessions expire.** A member that neither heartbeats nor commits for its session timeout
//!   is removed and the group rebalances without it; a member that does not rejoin a rebalance
//!   in time is left out of it (a static member stays until its session expires, as in Kafka).
//! - **Static members** (`group.instance.id`) that restart take their old place: in a stable
//!   group they get their assignment back without a rebalance, and the previous incarnation is
//!   fenced (FENCED_INSTANCE_ID).
//! - **Groups are described as Kafka describes them**: state, protocol, each member's id,
//!   instance id, client id, host (`/127.0.0.1`), subscription and assignment; listed with
//!   their state and type, also those that only have committed offsets (Empty); deleted only
//!   when Empty.
//!
//! The protocol is Kafka's (`GroupCoordinator.scala`, `GroupMetadata.scala`); what is left out:
//! the new consumer protocol (KIP-848; ConsumerGroupDescribe is not offered, as on a Kafka 3.9
//! broker in ZooKeeper mode), transactional offsets, and keeping members across a restart of
//! the broker (they join again).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use rama::{Context, Service};
use tansu_broker::coordinator::group::Groups;
use tansu_broker::Error;
use tansu_sans_io::{
    delete_groups_response::DeletableGroupResult,
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    join_group_response::JoinGroupResponseMember,
    leave_group_response::MemberResponse,
    list_groups_response::ListedGroup,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    },
    ApiKey as _, Body, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, ErrorCode, Frame, Header, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use tansu_service::FrameRouteBuilder;
use tansu_storage::{Storage, Topition};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Kafka's bounds on a member's session timeout (`group.min.session.timeout.ms`,
/// `group.max.session.timeout.ms`).
const MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How often sessions and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// The operations Kafka reports on a group when asked (READ, DELETE, DESCRIBE: no authorizer
/// here, so all of them), and what it reports when not asked.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

/// Settings of the coordinator, by their Kafka broker names.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members (Kafka: 3 s; each member that joins meanwhile extends it, up to
    /// the rebalance timeout).
    pub initial_rebalance_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { initial_rebalance_delay: Duration::ZERO }
    }
}

/// The coordinator, shared by every connection of the broker.
#[derive(Clone)]
pub struct Coordinator<S> {
    shared: Arc<Shared<S>>,
}

impl<S> std::fmt::Debug for Coordinator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

struct Shared<S> {
    storage: S,
    settings: Settings,
    groups: Mutex<BTreeMap<String, Group>>,
}

impl<S> Coordinator<S>
where
    S: Storage + Clone,
{
    /// A coordinator over `storage` (where committed offsets are kept). Must be called within
    /// a tokio runtime: it starts the task that expires sessions and ends rebalances that
    /// waited long enough, which ends with the coordinator.
    pub fn new(storage: S, settings: Settings) -> Self {
        let shared = Arc::new(Shared { storage, settings, groups: Mutex::new(BTreeMap::new()) });
        tokio::spawn(expire(Arc::downgrade(&shared)));
        Self { shared }
    }
}

/// Every [`TICK`], removes the members whose session expired and ends the rebalances whose
/// time is up, until the coordinator is gone.
async fn expire<S>(shared: Weak<Shared<S>>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        let mut groups = lock(&shared.groups);
        for (name, group) in groups.iter_mut() {
            group.expire(name, now);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held leaves the groups as they were at that point, which
    // is still a state every operation can take on from.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    /// The name Kafka gives the state (DescribeGroups, ListGroups).
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// A group's members and where it is in its rebalance.
#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    /// The assignor chosen for the current generation.
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Static members: `group.instance.id` → member id.
    instances: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until their join (or session) ends.
    pending: HashMap<String, Instant>,
    /// When the rebalance under way ends at the latest.
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group: when it ends unless more members join, and
    /// how far joins may push that.
    initial_delay: Option<(Instant, Instant)>,
}

/// What a member says of itself each time it joins.
#[derive(Debug)]
struct Said {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    /// The assignors the member supports, in its order of preference, each with its
    /// subscription.
    protocols: Vec<(String, Bytes)>,
}

#[derive(Debug)]
struct Member {
    /// As it last joined.
    said: Said,
    assignment: Bytes,
    joining: Option<oneshot::Sender<JoinGroupResponse>>,
    syncing: Option<oneshot::Sender<SyncGroupResponse>>,
    /// When the session expires unless the member is heard from.
    expires: Instant,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.said
            .protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.said.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn heard_from(&mut self, now: Instant) {
        self.expires = now + self.said.session_timeout;
    }
}

/// A JoinGroup: the member id it gives (none the first time) and what it says of itself.
struct Join {
    member_id: String,
    said: Said,
    /// Whether the client knows MEMBER_ID_REQUIRED (JoinGroup v4 and later).
    requires_member_id: bool,
}

/// A JoinGroup answered at once, or later when the rebalance completes.
enum Joined {
    Now(JoinGroupResponse),
    Later(oneshot::Receiver<JoinGroupResponse>),
}

enum Synced {
    Now(SyncGroupResponse),
    Later(oneshot::Receiver<SyncGroupResponse>),
}

fn join_error(error: ErrorCode, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .throttle_time_ms(Some(0))
        .error_code(error.into())
        .generation_id(-1)
        .protocol_type(None)
        .protocol_name(None)
        .leader(String::new())
        .skip_assignment(Some(false))
        .member_id(member_id.to_owned())
        .members(Some(vec![]))
}

fn sync_error(error: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .throttle_time_ms(Some(0))
        .error_code(error.into())
        .protocol_type(None)
        .protocol_name(None)
        .assignment(Bytes::new())
}

impl Group {
    fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay: None,
        }
    }

    /// The error for a request from `member_id` (with `instance_id`), if it is not a member.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Option<ErrorCode> {
        if let Some(instance_id) = instance_id {
            match self.instances.get(instance_id) {
                Some(current) if current != member_id => return Some(ErrorCode::FencedInstanceId),
                Some(_) => {}
                None => return Some(ErrorCode::UnknownMemberId),
            }
        }
        (!self.members.contains_key(member_id)).then_some(ErrorCode::UnknownMemberId)
    }

    /// The assignor every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let mut members = self.members.values();
        let first = members.next()?;
        let candidates: Vec<&str> = first
            .said
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.said.protocols.iter().find(|(name, _)| candidates.contains(&name.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        // The most votes; on a tie, the one the first member prefers.
        candidates
            .iter()
            .max_by_key(|name| {
                (votes.get(*name).copied().unwrap_or(0), std::cmp::Reverse(candidates.iter().position(|c| c == *name)))
            })
            .map(|name| (*name).to_owned())
    }

    /// Whether a member with these assignors can be in the group.
    fn accepts(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.members.values().all(|member| member.supports(name)))
    }

    fn rebalance_timeout(&self) -> Duration {
        self.members.values().map(|member| member.said.rebalance_timeout).max().unwrap_or(Duration::ZERO)
    }

    /// Starts a rebalance unless one is under way.
    fn rebalance(&mut self, now: Instant, initial_delay: Duration) {
        match self.state {
            State::PreparingRebalance => return self.try_complete_join(now),
            State::CompletingRebalance => {
                // The assignment being made is void: the members join again.
                for member in self.members.values_mut() {
                    member.assignment = Bytes::new();
                    if let Some(syncing) = member.syncing.take() {
                        let _ = syncing.send(sync_error(ErrorCode::RebalanceInProgress));
                    }
                }
            }
            State::Stable => {}
            State::Empty if !initial_delay.is_zero() => {
                let longest = now + self.rebalance_timeout().max(initial_delay);
                self.initial_delay = Some(((now + initial_delay).min(longest), longest));
            }
            State::Empty => {}
        }
        self.state = State::PreparingRebalance;
        self.rebalance_deadline = Some(now + self.rebalance_timeout());
        self.try_complete_join(now);
    }

    /// Completes the rebalance once every member has joined (and the initial delay is over).
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance || self.initial_delay.is_some() {
            return;
        }
        if self.pending.is_empty() && self.members.values().all(|member| member.joining.is_some()) {
            self.complete_join(now);
        }
    }

    /// The next generation, with the members that joined; dynamic members that did not are
    /// left out (static ones stay until their session expires, as in Kafka).
    fn complete_join(&mut self, now: Instant) {
        let left_out: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| member.joining.is_none() && member.said.instance_id.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in left_out {
            self.remove(&id, ErrorCode::UnknownMemberId);
        }
        self.pending.clear();
        self.initial_delay = None;
        if !self.members.is_empty() {
            let leader_joined = self
                .leader
                .as_ref()
                .and_then(|leader| self.members.get(leader))
                .is_some_and(|leader| leader.joining.is_some());
            if !leader_joined {
                match self.members.iter().find(|(_, member)| member.joining.is_some()) {
                    Some((id, _)) => self.leader = Some(id.clone()),
                    None => {
                        // Only static members that have not joined again: wait for them, or
                        // for their sessions to expire.
                        self.rebalance_deadline = Some(now + self.rebalance_timeout());
                        return;
                    }
                }
            }
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.state = State::CompletingRebalance;
        self.protocol = self.select_protocol();
        let protocol = self.protocol.clone().unwrap_or_default();
        let everyone: Vec<JoinGroupResponseMember> = self
            .members
            .iter()
            .map(|(id, member)| {
                JoinGroupResponseMember::default()
                    .member_id(id.clone())
                    .group_instance_id(member.said.instance_id.clone())
                    .metadata(member.metadata(&protocol))
            })
            .collect();
        let leader = self.leader.clone().unwrap_or_default();
        for (id, member) in self.members.iter_mut() {
            if let Some(joining) = member.joining.take() {
                member.heard_from(now);
                let members = if *id == leader { everyone.clone() } else { vec![] };
                let _ =
                    joining.send(self_response(id, self.generation, &self.protocol_type, &protocol, &leader, members));
            }
        }
    }

    /// Removes a member: its waiting join or sync gets `error`, and the group rebalances.
    fn remove(&mut self, member_id: &str, error: ErrorCode) -> bool {
        let Some(mut member) = self.members.remove(member_id) else { return false };
        if let Some(instance_id) = &member.said.instance_id {
            self.instances.remove(instance_id);
        }
        if let Some(joining) = member.joining.take() {
            let _ = joining.send(join_error(error, member_id));
        }
        if let Some(syncing) = member.syncing.take() {
            let _ = syncing.send(sync_error(error));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        true
    }

    /// After members left: a rebalance without them.
    fn after_removal(&mut self, now: Instant) {
        match self.state {
            State::Stable | State::CompletingRebalance => self.rebalance(now, Duration::ZERO),
            State::PreparingRebalance => self.try_complete_join(now),
            State::Empty => {}
        }
    }

    /// Removes the members whose session expired and ends a rebalance whose time is up.
    fn expire(&mut self, name: &str, now: Instant) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| member.joining.is_none() && member.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = name, member = %id, "A consumer group member's session expired");
            self.remove(id, ErrorCode::UnknownMemberId);
        }
        let pending = self.pending.len();
        self.pending.retain(|_, expires| *expires > now);
        if !expired.is_empty() || pending != self.pending.len() {
            self.after_removal(now);
        }
        if self.state == State::PreparingRebalance {
            match self.initial_delay {
                Some((until, _)) if until <= now => {
                    self.initial_delay = None;
                    self.complete_join(now);
                }
                Some(_) => {}
                None if self.rebalance_deadline.is_some_and(|deadline| deadline <= now) => self.complete_join(now),
                None => {}
            }
        }
    }

    fn join(&mut self, join: Join, now: Instant, settings: &Settings) -> Joined {
        if !self.accepts(&join.said.protocol_type, &join.said.protocols) {
            return Joined::Now(join_error(ErrorCode::InconsistentGroupProtocol, &join.member_id));
        }
        if join.member_id.is_empty() {
            let prefix = join.said.instance_id.clone().unwrap_or_else(|| join.said.client_id.clone());
            let member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            if let Some(old) = join.said.instance_id.as_ref().and_then(|instance| self.instances.get(instance)).cloned()
            {
                return self.rejoin_static(old, member_id, join, now);
            }
            if join.said.instance_id.is_none() && join.requires_member_id {
                self.pending.insert(member_id.clone(), now + join.said.session_timeout);
                return Joined::Now(join_error(ErrorCode::MemberIdRequired, &member_id));
            }
            return self.add(member_id, join, now, settings);
        }
        if self.pending.remove(&join.member_id).is_some() {
            let member_id = join.member_id.clone();
            return self.add(member_id, join, now, settings);
        }
        if let Some(error) = self.check_member(&join.member_id, join.said.instance_id.as_deref()) {
            return Joined::Now(join_error(error, &join.member_id));
        }
        let member_id = join.member_id.clone();
        let member = &self.members[&member_id];
        let unchanged = member.said.protocols == join.said.protocols;
        match self.state {
            State::Empty => Joined::Now(join_error(ErrorCode::UnknownMemberId, &member_id)),
            State::CompletingRebalance if unchanged => Joined::Now(self.current(&member_id, true)),
            State::Stable if unchanged && self.leader.as_deref() != Some(member_id.as_str()) => {
                Joined::Now(self.current(&member_id, false))
            }
            _ => {
                let receiver = self.update(&member_id, join, now);
                self.rebalance(now, Duration::ZERO);
                Joined::Later(receiver)
            }
        }
    }

    /// A new member, joining a rebalance (which starts if none is under way).
    fn add(&mut self, member_id: String, join: Join, now: Instant, settings: &Settings) -> Joined {
        let (sender, receiver) = oneshot::channel();
        if let Some(instance_id) = &join.said.instance_id {
            self.instances.insert(instance_id.clone(), member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(join.said.protocol_type.clone());
        }
        let expires = now + join.said.session_timeout;
        self.members.insert(
            member_id.clone(),
            Member { said: join.said, assignment: Bytes::new(), joining: Some(sender), syncing: None, expires },
        );
        if self.leader.is_none() {
            self.leader = Some(member_id);
        }
        if let Some((until, longest)) = &mut self.initial_delay {
            // Another member while the first rebalance waits: wait a little longer for more.
            *until = (now + settings.initial_rebalance_delay).min(*longest);
        }
        self.rebalance(now, settings.initial_rebalance_delay);
        Joined::Later(receiver)
    }

    /// A known member joining again: its assignors and timeouts as it sends them now.
    fn update(&mut self, member_id: &str, join: Join, now: Instant) -> oneshot::Receiver<JoinGroupResponse> {
        let (sender, receiver) = oneshot::channel();
        let member = self.members.get_mut(member_id).expect("a known member");
        member.said = join.said;
        member.heard_from(now);
        if let Some(previous) = member.joining.replace(sender) {
            let _ = previous.send(join_error(ErrorCode::RebalanceInProgress, member_id));
        }
        receiver
    }

    /// A static member that restarted (it joins without its member id): it takes its old
    /// place under a new id, and the old incarnation is fenced. In a stable group whose
    /// assignor stays the same it gets its assignment back without a rebalance.
    fn rejoin_static(&mut self, old: String, member_id: String, join: Join, now: Instant) -> Joined {
        let Some(mut member) = self.members.remove(&old) else {
            return Joined::Now(join_error(ErrorCode::UnknownMemberId, &join.member_id));
        };
        if let Some(joining) = member.joining.take() {
            let _ = joining.send(join_error(ErrorCode::FencedInstanceId, &old));
        }
        if let Some(syncing) = member.syncing.take() {
            let _ = syncing.send(sync_error(ErrorCode::FencedInstanceId));
        }
        let leader = self.leader.clone().unwrap_or_default();
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(member_id.clone());
        }
        if let Some(instance_id) = &join.said.instance_id {
            self.instances.insert(instance_id.clone(), member_id.clone());
        }
        self.members.insert(member_id.clone(), member);
        let receiver = self.update(&member_id, join, now);
        match self.state {
            State::Stable if self.select_protocol() == self.protocol => {
                // Answered with the leader as it was, so that the member does not take itself
                // for the leader and assign again: a stable group would not pass that on.
                self.members.get_mut(&member_id).expect("just inserted").joining = None;
                let protocol = self.protocol.clone().unwrap_or_default();
                Joined::Now(self_response(&member_id, self.generation, &self.protocol_type, &protocol, &leader, vec![]))
            }
            _ => {
                self.rebalance(now, Duration::ZERO);
                Joined::Later(receiver)
            }
        }
    }

    /// The current generation as a JoinGroup response for `member_id` (the leader's with every
    /// member, when `with_members`).
    fn current(&self, member_id: &str, with_members: bool) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if with_members && leader == member_id {
            self.members
                .iter()
                .map(|(id, member)| {
                    JoinGroupResponseMember::default()
                        .member_id(id.clone())
                        .group_instance_id(member.said.instance_id.clone())
                        .metadata(member.metadata(&protocol))
                })
                .collect()
        } else {
            vec![]
        };
        self_response(member_id, self.generation, &self.protocol_type, &protocol, &leader, members)
    }

    #[allow(clippy::too_many_arguments)]
    fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Synced {
        if let Some(error) = self.check_member(member_id, instance_id) {
            return Synced::Now(sync_error(error));
        }
        if generation != self.generation {
            return Synced::Now(sync_error(ErrorCode::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Synced::Now(sync_error(ErrorCode::InconsistentGroupProtocol));
        }
        let synced = |group: &Group, assignment: Bytes| {
            SyncGroupResponse::default()
                .throttle_time_ms(Some(0))
                .error_code(ErrorCode::None.into())
                .protocol_type(group.protocol_type.clone())
                .protocol_name(group.protocol.clone())
                .assignment(assignment)
        };
        match self.state {
            State::Empty => Synced::Now(sync_error(ErrorCode::UnknownMemberId)),
            State::PreparingRebalance => Synced::Now(sync_error(ErrorCode::RebalanceInProgress)),
            State::Stable => {
                let member = self.members.get_mut(member_id).expect("checked");
                member.heard_from(now);
                let assignment = member.assignment.clone();
                Synced::Now(synced(self, assignment))
            }
            State::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                let member = self.members.get_mut(member_id).expect("checked");
                member.heard_from(now);
                if let Some(previous) = member.syncing.replace(sender) {
                    let _ = previous.send(sync_error(ErrorCode::RebalanceInProgress));
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, member) in self.members.iter_mut() {
                        member.assignment = assignments.remove(id).unwrap_or_default();
                    }
                    self.state = State::Stable;
                    let responses: Vec<(String, Bytes)> =
                        self.members.iter().map(|(id, member)| (id.clone(), member.assignment.clone())).collect();
                    for (id, assignment) in responses {
                        let response = synced(self, assignment);
                        if let Some(syncing) = self.members.get_mut(&id).and_then(|member| member.syncing.take()) {
                            let _ = syncing.send(response);
                        }
                    }
                }
                Synced::Later(receiver)
            }
        }
    }

    fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> ErrorCode {
        if self.state == State::Empty {
            return ErrorCode::UnknownMemberId;
        }
        if let Some(error) = self.check_member(member_id, instance_id) {
            return error;
        }
        if generation != self.generation {
            return ErrorCode::IllegalGeneration;
        }
        self.members.get_mut(member_id).expect("checked").heard_from(now);
        match self.state {
            State::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// A member leaving: by member id, or by instance id (a static member).
    fn leave(&mut self, member_id: &str, instance_id: Option<&str>) -> ErrorCode {
        let member_id = match instance_id {
            Some(instance_id) => match self.instances.get(instance_id) {
                None => return ErrorCode::UnknownMemberId,
                Some(current) if !member_id.is_empty() && current != member_id => return ErrorCode::FencedInstanceId,
                Some(current) => current.clone(),
            },
            None => member_id.to_owned(),
        };
        if self.pending.remove(&member_id).is_some() {
            return ErrorCode::None;
        }
        if self.remove(&member_id, ErrorCode::UnknownMemberId) {
            ErrorCode::None
        } else {
            ErrorCode::UnknownMemberId
        }
    }

    /// Whether an offset commit with this generation and member may be stored.
    fn check_commit(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> ErrorCode {
        if generation < 0 && self.state == State::Empty {
            return ErrorCode::None;
        }
        if let Some(error) = self.check_member(member_id, instance_id) {
            return error;
        }
        if generation != self.generation {
            return ErrorCode::IllegalGeneration;
        }
        if self.state == State::CompletingRebalance {
            return ErrorCode::RebalanceInProgress;
        }
        self.members.get_mut(member_id).expect("checked").heard_from(now);
        ErrorCode::None
    }

    fn describe(&self, name: &str, authorized_operations: i32) -> DescribedGroup {
        let stable = self.state == State::Stable;
        let protocol = if stable { self.protocol.clone().unwrap_or_default() } else { String::new() };
        let members = self
            .members
            .iter()
            .map(|(id, member)| {
                let (metadata, assignment) = if stable {
                    (member.metadata(&protocol), member.assignment.clone())
                } else {
                    (Bytes::new(), Bytes::new())
                };
                DescribedGroupMember::default()
                    .member_id(id.clone())
                    .group_instance_id(member.said.instance_id.clone())
                    .client_id(member.said.client_id.clone())
                    .client_host(member.said.client_host.clone())
                    .member_metadata(metadata)
                    .member_assignment(assignment)
            })
            .collect();
        DescribedGroup::default()
            .error_code(ErrorCode::None.into())
            .group_id(name.to_owned())
            .group_state(self.state.name().to_owned())
            .protocol_type(self.protocol_type.clone().unwrap_or_default())
            .protocol_data(protocol)
            .members(Some(members))
            .authorized_operations(Some(authorized_operations))
    }
}

/// A JoinGroup response of the current generation.
fn self_response(
    member_id: &str,
    generation: i32,
    protocol_type: &Option<String>,
    protocol: &str,
    leader: &str,
    members: Vec<JoinGroupResponseMember>,
) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .throttle_time_ms(Some(0))
        .error_code(ErrorCode::None.into())
        .generation_id(generation)
        .protocol_type(protocol_type.clone())
        .protocol_name(Some(protocol.to_owned()))
        .leader(leader.to_owned())
        .skip_assignment(Some(false))
        .member_id(member_id.to_owned())
        .members(Some(members))
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl<S> Coordinator<S>
where
    S: Storage + Clone,
{
    async fn join(
        &self,
        request: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: String,
    ) -> JoinGroupResponse {
        let session_timeout = millis(request.session_timeout_ms);
        let join = Join {
            member_id: request.member_id.clone(),
            said: Said {
                instance_id: request.group_instance_id.clone(),
                client_id: client_id.to_owned(),
                client_host,
                session_timeout,
                // Version 0 has none: the session timeout serves.
                rebalance_timeout: request.rebalance_timeout_ms.map_or(session_timeout, millis),
                protocol_type: request.protocol_type.clone(),
                protocols: request.protocols.unwrap_or_default().into_iter().map(|p| (p.name, p.metadata)).collect(),
            },
            requires_member_id: version >= 4,
        };
        if request.group_id.is_empty() {
            return join_error(ErrorCode::InvalidGroupId, &join.member_id);
        }
        if !(MIN_SESSION_TIMEOUT..=MAX_SESSION_TIMEOUT).contains(&session_timeout) {
            return join_error(ErrorCode::InvalidSessionTimeout, &join.member_id);
        }
        if join.said.protocol_type.is_empty() || join.said.protocols.is_empty() {
            return join_error(ErrorCode::InconsistentGroupProtocol, &join.member_id);
        }
        let joined = {
            let mut groups = lock(&self.shared.groups);
            if !join.member_id.is_empty() && !groups.contains_key(&request.group_id) {
                return join_error(ErrorCode::UnknownMemberId, &join.member_id);
            }
            let group = groups.entry(request.group_id.clone()).or_insert_with(Group::new);
            group.join(join, Instant::now(), &self.shared.settings)
        };
        match joined {
            Joined::Now(response) => response,
            // The sender is dropped only when the broker stops.
            Joined::Later(receiver) => {
                receiver.await.unwrap_or_else(|_| join_error(ErrorCode::CoordinatorNotAvailable, ""))
            }
        }
    }

    fn sync(&self, request: SyncGroupRequest) -> Synced {
        let mut groups = lock(&self.shared.groups);
        let Some(group) = groups.get_mut(&request.group_id) else {
            return Synced::Now(sync_error(ErrorCode::UnknownMemberId));
        };
        let assignments =
            request.assignments.unwrap_or_default().into_iter().map(|a| (a.member_id, a.assignment)).collect();
        group.sync(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
            request.protocol_type.as_deref(),
            request.protocol_name.as_deref(),
            assignments,
            Instant::now(),
        )
    }

    fn heartbeat(&self, request: &HeartbeatRequest) -> ErrorCode {
        let mut groups = lock(&self.shared.groups);
        match groups.get_mut(&request.group_id) {
            Some(group) => group.heartbeat(
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation_id,
                Instant::now(),
            ),
            None => ErrorCode::UnknownMemberId,
        }
    }

    fn leave(&self, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let leaving: Vec<(String, Option<String>)> = match request.members {
            Some(members) if version >= 3 => members.into_iter().map(|m| (m.member_id, m.group_instance_id)).collect(),
            _ => vec![(request.member_id.clone().unwrap_or_default(), None)],
        };
        let mut groups = lock(&self.shared.groups);
        let now = Instant::now();
        let results: Vec<MemberResponse> = leaving
            .into_iter()
            .map(|(member_id, instance_id)| {
                let error = match groups.get_mut(&request.group_id) {
                    Some(group) => group.leave(&member_id, instance_id.as_deref()),
                    None => ErrorCode::UnknownMemberId,
                };
                MemberResponse::default().member_id(member_id).group_instance_id(instance_id).error_code(error.into())
            })
            .collect();
        if let Some(group) = groups.get_mut(&request.group_id) {
            group.after_removal(now);
        }
        // Before version 3 the one member's error is the response's.
        let error = if version < 3 { results.first().map_or(0, |r| r.error_code) } else { ErrorCode::None.into() };
        LeaveGroupResponse::default().throttle_time_ms(Some(0)).error_code(error).members(Some(results))
    }

    async fn offset_commit(&self, request: OffsetCommitRequest) -> Result<OffsetCommitResponse, Error> {
        let generation = request.generation_id_or_member_epoch.unwrap_or(-1);
        let member_id = request.member_id.clone().unwrap_or_default();
        let topics = request.topics.unwrap_or_default();
        let error = {
            let mut groups = lock(&self.shared.groups);
            match groups.get_mut(&request.group_id) {
                Some(group) => {
                    group.check_commit(&member_id, request.group_instance_id.as_deref(), generation, Instant::now())
                }
                // A group that is not managed by the coordinator may commit (generation -1).
                None if generation < 0 => ErrorCode::None,
                None => ErrorCode::IllegalGeneration,
            }
        };
        let answers: Vec<(Topition, ErrorCode)> = if error == ErrorCode::None {
            let mut offsets = vec![];
            for topic in &topics {
                for partition in topic.partitions.as_deref().unwrap_or_default() {
                    offsets.push((
                        Topition::new(topic.name.clone(), partition.partition_index),
                        tansu_storage::OffsetCommitRequest::try_from(partition)?,
                    ));
                }
            }
            // Kafka keeps committed offsets by its offsets.retention.minutes, not per request.
            self.shared.storage.offset_commit(&request.group_id, None, &offsets).await?
        } else {
            topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .map(|partition| (Topition::new(topic.name.clone(), partition.partition_index), error))
                })
                .collect()
        };
        let mut by_topic: BTreeMap<String, Vec<OffsetCommitResponsePartition>> = BTreeMap::new();
        for (topition, error) in answers {
            by_topic.entry(topition.topic().to_owned()).or_default().push(
                OffsetCommitResponsePartition::default().partition_index(topition.partition()).error_code(error.into()),
            );
        }
        Ok(OffsetCommitResponse::default().throttle_time_ms(Some(0)).topics(Some(
            by_topic
                .into_iter()
                .map(|(name, partitions)| OffsetCommitResponseTopic::default().name(name).partitions(Some(partitions)))
                .collect(),
        )))
    }

    /// The committed offsets of `group` for `topics` (all it has, when none are named).
    async fn committed(&self, group: &str, topics: Option<Vec<Topition>>) -> Result<BTreeMap<Topition, i64>, Error> {
        let storage = &self.shared.storage;
        Ok(match topics {
            Some(topics) => storage.offset_fetch(Some(group), &topics, None).await?,
            None => storage.committed_offset_topitions(group).await?,
        })
    }

    async fn offset_fetch(&self, request: OffsetFetchRequest) -> Result<OffsetFetchResponse, Error> {
        fn named(topics: Vec<(String, Option<Vec<i32>>)>) -> Vec<Topition> {
            topics
                .into_iter()
                .flat_map(|(name, partitions)| {
                    partitions
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |partition| Topition::new(name.clone(), partition))
                })
                .collect()
        }
        fn by_topic(offsets: BTreeMap<Topition, i64>) -> BTreeMap<String, Vec<(i32, i64)>> {
            let mut topics: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
            for (topition, offset) in offsets {
                topics.entry(topition.topic().to_owned()).or_default().push((topition.partition(), offset));
            }
            topics
        }
        let response = OffsetFetchResponse::default().throttle_time_ms(Some(0));
        if let Some(groups) = request.groups {
            let mut answered = vec![];
            for group in groups {
                let topics = group
                    .topics
                    .map(|topics| named(topics.into_iter().map(|t| (t.name, t.partition_indexes)).collect()));
                let offsets = self.committed(&group.group_id, topics).await?;
                let topics = by_topic(offsets)
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetFetchResponseTopics::default().name(name).partitions(Some(
                            partitions
                                .into_iter()
                                .map(|(partition, offset)| {
                                    OffsetFetchResponsePartitions::default()
                                        .partition_index(partition)
                                        .committed_offset(offset)
                                        .committed_leader_epoch(-1)
                                        .metadata(Some(String::new()))
                                        .error_code(ErrorCode::None.into())
                                })
                                .collect(),
                        ))
                    })
                    .collect();
                answered.push(
                    OffsetFetchResponseGroup::default()
                        .group_id(group.group_id)
                        .topics(Some(topics))
                        .error_code(ErrorCode::None.into()),
                );
            }
            return Ok(response.groups(Some(answered)));
        }
        let group = request.group_id.unwrap_or_default();
        let topics =
            request.topics.map(|topics| named(topics.into_iter().map(|t| (t.name, t.partition_indexes)).collect()));
        let offsets = self.committed(&group, topics).await?;
        let topics = by_topic(offsets)
            .into_iter()
            .map(|(name, partitions)| {
                OffsetFetchResponseTopic::default().name(name).partitions(Some(
                    partitions
                        .into_iter()
                        .map(|(partition, offset)| {
                            OffsetFetchResponsePartition::default()
                                .partition_index(partition)
                                .committed_offset(offset)
                                .committed_leader_epoch(Some(-1))
                                .metadata(Some(String::new()))
                                .error_code(ErrorCode::None.into())
                        })
                        .collect(),
                ))
            })
            .collect();
        Ok(response.topics(Some(topics)).error_code(Some(ErrorCode::None.into())))
    }

    /// Groups the storage knows by their committed offsets only (none of their members has
    /// joined since the broker started): Empty, as Kafka shows such a group.
    async fn stored_groups(&self) -> Result<BTreeSet<String>, Error> {
        let storage = &self.shared.storage;
        let mut stored = BTreeSet::new();
        for group in storage.list_groups(None).await? {
            // On disk a deleted group's folder outlives its offsets (an empty directory).
            if !storage.committed_offset_topitions(&group.group_id).await?.is_empty() {
                stored.insert(group.group_id);
            }
        }
        Ok(stored)
    }

    async fn describe(&self, request: DescribeGroupsRequest) -> Result<DescribeGroupsResponse, Error> {
        let operations = if request.include_authorized_operations.unwrap_or(false) {
            GROUP_OPERATIONS
        } else {
            OPERATIONS_NOT_ASKED
        };
        let stored = self.stored_groups().await?;
        let groups = lock(&self.shared.groups);
        let described = request
            .groups
            .unwrap_or_default()
            .into_iter()
            .map(|name| match groups.get(&name) {
                Some(group) => group.describe(&name, operations),
                None => {
                    let state = if stored.contains(&name) { "Empty" } else { "Dead" };
                    let protocol_type = if stored.contains(&name) { "consumer" } else { "" };
                    DescribedGroup::default()
                        .error_code(ErrorCode::None.into())
                        .group_id(name)
                        .group_state(state.to_owned())
                        .protocol_type(protocol_type.to_owned())
                        .protocol_data(String::new())
                        .members(Some(vec![]))
                        .authorized_operations(Some(operations))
                }
            })
            .collect();
        Ok(DescribeGroupsResponse::default().throttle_time_ms(Some(0)).groups(Some(described)))
    }

    async fn list(&self, request: ListGroupsRequest) -> Result<ListGroupsResponse, Error> {
        let stored = self.stored_groups().await?;
        let groups = lock(&self.shared.groups);
        let mut listed: BTreeMap<String, (String, &'static str)> =
            stored.into_iter().map(|name| (name, ("consumer".to_owned(), State::Empty.name()))).collect();
        for (name, group) in groups.iter() {
            listed.insert(name.clone(), (group.protocol_type.clone().unwrap_or_default(), group.state.name()));
        }
        let states: Option<Vec<String>> = request.states_filter.filter(|s| !s.is_empty());
        let classic = request
            .types_filter
            .filter(|types| !types.is_empty())
            .is_none_or(|types| types.iter().any(|t| t.eq_ignore_ascii_case("classic")));
        let groups = listed
            .into_iter()
            .filter(|_| classic)
            .filter(|(_, (_, state))| {
                states.as_ref().is_none_or(|states| states.iter().any(|s| s.eq_ignore_ascii_case(state)))
            })
            .map(|(name, (protocol_type, state))| {
                ListedGroup::default()
                    .group_id(name)
                    .protocol_type(protocol_type)
                    .group_state(Some(state.to_owned()))
                    .group_type(Some("classic".to_owned()))
            })
            .collect();
        Ok(ListGroupsResponse::default()
            .throttle_time_ms(Some(0))
            .error_code(ErrorCode::None.into())
            .groups(Some(groups)))
    }

    async fn delete(&self, request: DeleteGroupsRequest) -> Result<DeleteGroupsResponse, Error> {
        let mut results = vec![];
        for name in request.groups_names.unwrap_or_default() {
            let known = {
                let mut groups = lock(&self.shared.groups);
                match groups.get(&name).map(|group| group.state) {
                    Some(State::Empty) => {
                        groups.remove(&name);
                        true
                    }
                    Some(_) => {
                        results.push(
                            DeletableGroupResult::default().group_id(name).error_code(ErrorCode::NonEmptyGroup.into()),
                        );
                        continue;
                    }
                    None => false,
                }
            };
            // Whether the storage has the group's offsets (its answer to the deletion cannot
            // tell: deleting what is not there succeeds in an object store).
            let stored = self.stored_groups().await?.contains(&name);
            if stored {
                self.shared.storage.delete_groups(Some(std::slice::from_ref(&name))).await?;
            }
            let error = if known || stored { ErrorCode::None } else { ErrorCode::GroupIdNotFound };
            results.push(DeletableGroupResult::default().group_id(name).error_code(error.into()));
        }
        Ok(DeleteGroupsResponse::default().throttle_time_ms(0).results(Some(results)))
    }

    async fn serve_body(&self, ctx: &Context<()>, version: i16, client_id: &str, body: Body) -> Result<Body, Error> {
        Ok(match body {
            Body::JoinGroupRequest(request) => {
                // Kafka shows a member's host as Java prints an address: "/127.0.0.1".
                let host = ctx.get::<SocketAddr>().map(|addr| format!("/{}", addr.ip())).unwrap_or_default();
                let response = self.join(request, version, client_id, host).await;
                // The assignor's name may be null from version 7 on; before, Kafka sends "".
                let protocol_name = response.protocol_name.clone().or_else(|| (version < 7).then(String::new));
                response.protocol_name(protocol_name).into()
            }
            Body::SyncGroupRequest(request) => match self.sync(request) {
                Synced::Now(response) => response.into(),
                Synced::Later(receiver) => {
                    receiver.await.unwrap_or_else(|_| sync_error(ErrorCode::CoordinatorNotAvailable)).into()
                }
            },
            Body::HeartbeatRequest(request) => HeartbeatResponse::default()
                .throttle_time_ms(Some(0))
                .error_code(self.heartbeat(&request).into())
                .into(),
            Body::LeaveGroupRequest(request) => self.leave(request, version).into(),
            Body::OffsetCommitRequest(request) => self.offset_commit(request).await?.into(),
            Body::OffsetFetchRequest(request) => self.offset_fetch(request).await?.into(),
            Body::DescribeGroupsRequest(request) => self.describe(request).await?.into(),
            Body::ListGroupsRequest(request) => self.list(request).await?.into(),
            Body::DeleteGroupsRequest(request) => self.delete(request).await?.into(),
            other => return Err(Error::Message(format!("not a group request: {other:?}"))),
        })
    }
}

/// The APIs this coordinator serves.
const APIS: [i16; 9] = [
    JoinGroupRequest::KEY,
    SyncGroupRequest::KEY,
    HeartbeatRequest::KEY,
    LeaveGroupRequest::KEY,
    OffsetCommitRequest::KEY,
    OffsetFetchRequest::KEY,
    DescribeGroupsRequest::KEY,
    ListGroupsRequest::KEY,
    DeleteGroupsRequest::KEY,
];

impl<S> Service<(), Frame> for Coordinator<S>
where
    S: Storage + Clone,
{
    type Response = Frame;
    type Error = Error;

    async fn serve(&self, ctx: Context<()>, req: Frame) -> Result<Frame, Error> {
        let correlation_id = req.correlation_id()?;
        let version = req.api_version()?;
        let client_id = req.client_id()?.unwrap_or_default().to_owned();
        let body = self.serve_body(&ctx, version, &client_id, req.body).await?;
        Ok(Frame { size: 0, header: Header::Response { correlation_id }, body })
    }
}

impl<S> Groups for Coordinator<S>
where
    S: Storage + Clone,
{
    fn routes(&self, builder: FrameRouteBuilder<(), Error>) -> tansu_broker::Result<FrameRouteBuilder<(), Error>> {
        // The storage's routes for describing, listing and deleting groups give way, and
        // ConsumerGroupDescribe (the new protocol's, KIP-848) is not offered, as on Kafka 3.9
        // in ZooKeeper mode: clients describe classic groups with DescribeGroups.
        let builder = APIS
            .iter()
            .fold(builder, |builder, key| builder.without_route(*key))
            .without_route(ConsumerGroupDescribeRequest::KEY);
        APIS.iter()
            .try_fold(builder, |builder, key| builder.with_route(*key, self.clone().boxed()).map_err(Error::from))
    }
}
