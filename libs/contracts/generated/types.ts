// Generated from libs/contracts by chat_contracts.codegen. Do not edit.

export type ErrorCode = "VALIDATION_ERROR" | "UNAUTHORIZED" | "FORBIDDEN" | "NOT_FOUND" | "EDIT_WINDOW_EXPIRED" | "DELETE_WINDOW_EXPIRED" | "BLOCKED" | "RATE_LIMITED" | "PAYLOAD_TOO_LARGE" | "LIMIT_EXCEEDED" | "CONFLICT" | "UNAVAILABLE" | "INTERNAL" | "NOT_IMPLEMENTED";

export interface Ack {
  status: 'ok' | 'error' | 'retry';
  error?: string;
  code?: ErrorCode;
  field?: string;
  retryAfter?: number;
  retryCount?: number;
}

/** One target's result in `message:broadcast`. */
export interface BroadcastOutcome {
  status: "error" | "ok" | "retry";
  conversationId?: string;
  groupId?: string;
  messageId?: string;
  code?: string;
}

/** Ack of `message:broadcast`. */
export interface BroadcastResult {
  results: BroadcastOutcome[];
}

/** `call:accepted`. */
export interface CallAccepted {
  callId: string;
  answer: Record<string, unknown>;
}

/** `call:answer`. */
export interface CallAnswer {
  callId: string;
  answer: SessionDescription;
}

/** `call:ended`. */
export interface CallEnded {
  callId: string;
  reason: "answered_elsewhere" | "disconnect" | "hangup" | "timeout";
  endedBy?: string;
  duration?: number;
}

/** `call:ice-candidate`. */
export interface CallIce {
  callId: string;
  candidate: IceCandidate;
}

/** `call:ice-candidate` (server→client). */
export interface CallIceEvent {
  callId: string;
  candidate: Record<string, unknown>;
  fromUserId: string;
}

/** `call:incoming`. */
export interface CallIncoming {
  callId: string;
  callerId: string;
  callerName: string;
  callType: "audio" | "video";
  offer: Record<string, unknown>;
  iceServers: IceServer[];
  callerAvatar?: string;
}

/** `call:offer`. */
export interface CallOffer {
  targetUserId: string;
  offer: SessionDescription;
  callType: "audio" | "video";
}

/** Ack of `call:offer`. */
export interface CallOfferResult {
  callId: string;
  iceServers: IceServer[];
}

/** One call in `calls:history` (times ISO-8601; `duration` in seconds when answered). */
export interface CallRecord {
  callId: string;
  callerId: string;
  calleeId: string;
  callType: "audio" | "video";
  startedAt: string;
  answeredAt?: string;
  endedAt?: string;
  reason?: "blocked" | "busy" | "declined" | "disconnect" | "hangup" | "offline" | "timeout";
  duration?: number;
}

/** `call:reject` / `call:end`. */
export interface CallRef {
  callId: string;
}

/** `call:rejected`. */
export interface CallRejected {
  callId: string;
  reason: "blocked" | "busy" | "declined" | "offline";
}

/** `calls:history`: the actor's calls, newest first; `cursor` from the previous page. */
export interface CallsHistory {
  cursor?: string;
  limit?: number;
}

/** Ack of `calls:history`: newest first; `cursor` asks for the next page. */
export interface CallsHistoryResult {
  calls: CallRecord[];
  hasMore: boolean;
  cursor?: string;
}

/** `conversation:mute` / `conversation:unmute`; no `mutedUntil` = forever. */
export interface ChatMute {
  conversationId?: string;
  groupId?: string;
  mutedUntil?: string;
  retryCount?: number;
}

/** `conversation:muted`. */
export interface ChatMuted {
  conversationId?: string;
  groupId?: string;
  mutedUntil?: string;
}

/** One chat in the `sync` ack. `mutedUntil`: absent when the chat is not muted, null when muted forever. */
export interface ChatState {
  lastSeq: number;
  lastRev: number;
  unread: number;
  conversationId?: string;
  groupId?: string;
  mutedUntil?: string;
}

/** `conversation:unmuted`. */
export interface ChatUnmuted {
  conversationId?: string;
  groupId?: string;
}

/** One previous content of an edited message. */
export interface EditRecord {
  content: string;
  editedAt: string;
}

/** `message:history:edits`. */
export interface EditsQuery {
  messageId: string;
}

/** Ack of `message:history:edits`. */
export interface EditsResult {
  edits: EditRecord[];
}

/** An ack with no result fields. */
export interface Empty {
}

/** `forwardedFrom` of a forwarded message. */
export interface ForwardedFrom {
  messageId: string;
  senderId: string;
  senderName: string;
}

/** A group as one member sees it (`myRole` is the viewer's). */
export interface Group {
  id: string;
  name: string;
  createdBy: string;
  createdAt: string;
  memberCount: number;
  myRole: "ADMIN" | "MEMBER";
  description?: string;
  avatarUrl?: string;
}

/** `group:create`: the creator becomes ADMIN and need not be listed. */
export interface GroupCreate {
  name: string;
  description?: string;
  avatarUrl?: string;
  memberIds?: string[];
}

/** `group:deleted`. */
export interface GroupDeleted {
  groupId: string;
  deletedBy: string;
}

/** `group:member:add`. */
export interface GroupMemberAdd {
  groupId: string;
  userId: string;
  role?: "ADMIN" | "MEMBER";
}

/** `group:member:added`. */
export interface GroupMemberAdded {
  groupId: string;
  userId: string;
  addedBy: string;
  role: "ADMIN" | "MEMBER";
}

/** `group:member:remove` (a member removing itself leaves). */
export interface GroupMemberRemove {
  groupId: string;
  userId: string;
}

/** `group:member:removed`. */
export interface GroupMemberRemoved {
  groupId: string;
  userId: string;
  removedBy: string;
}

/** `group:member:role`. */
export interface GroupMemberRole {
  groupId: string;
  userId: string;
  role: "ADMIN" | "MEMBER";
}

/** `group:member:role_changed`. */
export interface GroupMemberRoleChanged {
  groupId: string;
  userId: string;
  role: "ADMIN" | "MEMBER";
  changedBy: string;
}

/** `group:delete` and `group:get`. */
export interface GroupRef {
  groupId: string;
}

/** Ack of group commands. */
export interface GroupResult {
  group: Group;
}

/** `group:update`: only the given fields change. */
export interface GroupUpdate {
  groupId: string;
  name?: string;
  description?: string;
  avatarUrl?: string;
}

/** `group:updated`: only the changed fields are present. */
export interface GroupUpdated {
  groupId: string;
  updatedBy: string;
  name?: string;
  description?: string;
  avatarUrl?: string;
}

/** `groups:list`. */
export interface GroupsList {
}

/** Ack of `groups:list`. */
export interface GroupsResult {
  groups: Group[];
}

/** `messages:history`: newest first, `beforeSeq` exclusive. */
export interface HistoryRequest {
  conversationId?: string;
  targetUserId?: string;
  groupId?: string;
  beforeSeq?: number;
  limit?: number;
}

/** Ack of `messages:history`. */
export interface HistoryResult {
  messages: SocketMessage[];
  hasMore: boolean;
}

/** An `RTCIceCandidateInit`, relayed untouched. */
export interface IceCandidate {
  candidate?: string;
  sdpMid?: string;
  sdpMLineIndex?: number;
  usernameFragment?: string;
}

/** One entry of `iceServers` (RTCIceServer). */
export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

/** `presence:last_seen` (server→client), and one row of its ack. */
export interface LastSeen {
  userId: string;
  lastSeenAt: string;
}

/** `presence:last_seen` asked by the client. */
export interface LastSeenQuery {
  userIds: string[];
}

/** Ack of `presence:last_seen`. */
export interface LastSeenResult {
  lastSeen: LastSeen[];
}

/** `message:batch`: missed messages of one chat, in `seq` order. */
export interface MessageBatch {
  messages: SocketMessage[];
  conversationId?: string;
  groupId?: string;
  limited?: boolean;
}

/** `message:broadcast`: at most 50 targets in all. */
export interface MessageBroadcast {
  content: string;
  type?: "AUDIO" | "FILE" | "IMAGE" | "TEXT" | "VIDEO";
  conversationIds?: string[];
  groupIds?: string[];
  clientMessageId?: string;
  mediaUrl?: string;
  retryCount?: number;
}

/** `message:delete`. */
export interface MessageDelete {
  conversationId?: string;
  groupId?: string;
  messageId: string;
  deleteForEveryone?: boolean;
  retryCount?: number;
}

/** `message:deleted`. */
export interface MessageDeleted {
  messageId: string;
  deletedBy: string;
  deletedAt: string;
  deleteForEveryone: boolean;
  conversationId?: string;
  groupId?: string;
}

/** `message:edit`. */
export interface MessageEdit {
  conversationId?: string;
  groupId?: string;
  messageId: string;
  content: string;
  retryCount?: number;
}

/** `message:edited`. */
export interface MessageEdited {
  messageId: string;
  content: string;
  editedAt: string;
  conversationId?: string;
  groupId?: string;
}

/** `message:forward`. */
export interface MessageForward {
  messageId: string;
  targetConversationId?: string;
  targetGroupId?: string;
  targetUserId?: string;
  clientMessageId?: string;
  retryCount?: number;
}

/** `message:pin` and `message:unpin`. */
export interface MessagePinChange {
  conversationId?: string;
  groupId?: string;
  messageId: string;
  retryCount?: number;
}

/** `message:pinned`. */
export interface MessagePinned {
  messageId: string;
  pinnedBy: string;
  pinnedAt: string;
  conversationId?: string;
  groupId?: string;
}

/** `message:read`, single (`messageId`) or bulk (`messageIds`) form. */
export interface MessageRead {
  messageId?: string;
  messageIds?: string[];
  conversationId?: string;
  targetUserId?: string;
  groupId?: string;
  readAt?: string;
  retryCount?: number;
}

/** Ack of `message:send`, `message:edit`, `message:forward`. */
export interface MessageResult {
  message: SocketMessage;
}

/** `message:send`. */
export interface MessageSend {
  conversationId?: string;
  targetUserId?: string;
  groupId?: string;
  clientMessageId: string;
  type?: "AUDIO" | "FILE" | "IMAGE" | "TEXT" | "VIDEO";
  content?: string;
  mediaUrl?: string;
  replyToId?: string;
  retryCount?: number;
}

/** `message:unpinned`. */
export interface MessageUnpinned {
  messageId: string;
  unpinnedBy: string;
  conversationId?: string;
  groupId?: string;
}

/** `notification:register`. */
export interface NotificationRegister {
  deviceId: string;
  platform: "android" | "ios" | "web";
  token: string;
  provider?: "apns" | "fcm";
  previews?: boolean;
}

/** `notification:unregister`. */
export interface NotificationUnregister {
  deviceId: string;
}

/** `pins:list`. */
export interface PinsList {
  conversationId?: string;
  targetUserId?: string;
  groupId?: string;
}

/** Ack of `pins:list`. */
export interface PinsResult {
  messages: SocketMessage[];
}

/** `presence:query` ack and `presence:state` event. */
export interface PresencePage {
  onlineUserIds: string[];
  total: number;
  hasMore: boolean;
  cursor?: string;
  groupId?: string;
}

/** `presence:query`: pages the online members of a group. */
export interface PresenceQuery {
  groupId: string;
  cursor?: string;
  limit?: number;
}

/** `presence:set`: the manual status. */
export interface PresenceSet {
  status: "away" | "busy" | "online";
}

/** `presence:subscribe`: answers with `presence:state` for the first page. */
export interface PresenceSubscribe {
  groupId: string;
}

/** `presence:update`. */
export interface PresenceUpdate {
  userId: string;
  status: "away" | "busy" | "offline" | "online";
  lastSeenAt?: string;
  customStatus?: string;
}

/** `message:reaction:added`. */
export interface ReactionAdded {
  messageId: string;
  userId: string;
  emoji: string;
  createdAt: string;
  conversationId?: string;
  groupId?: string;
}

/** `message:reaction:add` and `message:reaction:remove`. */
export interface ReactionChange {
  conversationId?: string;
  groupId?: string;
  messageId: string;
  emoji: string;
  retryCount?: number;
}

/** `message:reaction:removed`. */
export interface ReactionRemoved {
  messageId: string;
  userId: string;
  emoji: string;
  conversationId?: string;
  groupId?: string;
}

/** One emoji's aggregate on a message (`userIds`: the first 20). */
export interface ReactionSummary {
  emoji: string;
  count: number;
  userIds: string[];
}

/** Ack of `message:reaction:add` / `:remove`. */
export interface ReactionsResult {
  reactions: ReactionSummary[];
}

/** `message:read` (server→client): one per chat per read call. */
export interface ReadEvent {
  messageIds: string[];
  readBy: string;
  readAt: string;
  conversationId?: string;
  groupId?: string;
}

/** Ack of `message:read`: how many of the named messages were newly read. */
export interface ReadResult {
  count: number;
}

/** `replyTo` of a message; `content` is "" and `isDeleted` true once the original is gone. */
export interface ReplyContext {
  messageId: string;
  content: string;
  senderId: string;
  senderName: string;
  isDeleted?: boolean;
  isEdited?: boolean;
  editedAt?: string;
}

/** `search:messages`. */
export interface SearchMessages {
  query: string;
  conversationId?: string;
  groupId?: string;
  limit?: number;
  cursor?: string;
}

/** `search:messages` ack and `search:results` event. */
export interface SearchResults {
  query: string;
  results: SocketMessage[];
  hasMore: boolean;
  cursor?: string;
}

/** An `RTCSessionDescriptionInit`, relayed untouched. */
export interface SessionDescription {
  type: "answer" | "offer" | "pranswer" | "rollback";
  sdp?: string;
}

/** A message as every client sees it. */
export interface SocketMessage {
  id: string;
  seq: number;
  senderId: string;
  senderName: string;
  type: "AUDIO" | "FILE" | "IMAGE" | "TEXT" | "VIDEO";
  createdAt: string;
  clientMessageId?: string;
  conversationId?: string;
  groupId?: string;
  senderAvatar?: string;
  content?: string;
  mediaUrl?: string;
  editedAt?: string;
  deletedAt?: string;
  replyTo?: ReplyContext;
  forwardedFrom?: ForwardedFrom;
  isEdited: boolean;
  isDeleted: boolean;
  reactions: ReactionSummary[];
  pinned: boolean;
  rev: number;
}

/** `status:set`: an empty `status` clears it. */
export interface StatusSet {
  status: string;
  emoji?: string;
  expiresAt?: string;
}

/** `status:updated`: `status` "" means cleared. */
export interface StatusUpdated {
  userId: string;
  status: string;
  emoji?: string;
  expiresAt?: string;
}

/** The last `seq` (and change `rev`) a client holds for one chat; without `rev` the client gets new messages only. */
export interface SyncCursor {
  conversationId?: string;
  groupId?: string;
  seq: number;
  rev?: number;
}

/** `sync`: chats not named in `since` are sent from the start (seq 0). */
export interface SyncRequest {
  since?: SyncCursor[];
}

/** Ack of `sync`. */
export interface SyncResult {
  chats: ChatState[];
}

/** `typing:start` / `typing:stop` (no ack). */
export interface TypingChange {
  conversationId?: string;
  targetUserId?: string;
  groupId?: string;
}

/** `typing:start` / `typing:stop` (server→client). */
export interface TypingEvent {
  userId: string;
  userName: string;
  userAvatar?: string;
  conversationId?: string;
  groupId?: string;
}

/** `upload:complete`. */
export interface UploadComplete {
  uploadId: string;
  fileName: string;
  mediaUrl: string;
  fileSize: number;
}

/** `upload:failed`. */
export interface UploadFailed {
  uploadId: string;
  fileName: string;
  error: string;
}

/** `upload:progress`. */
export interface UploadProgress {
  uploadId: string;
  fileName: string;
  progress: number;
  bytesUploaded: number;
  totalBytes: number;
}

/** `user:blocked`. */
export interface UserBlocked {
  blockedBy: string;
}

/** `user:block` / `user:unblock`. */
export interface UserRef {
  userId: string;
}

/** `user:unblocked`. */
export interface UserUnblocked {
  unblockedBy: string;
}

export interface ClientToServerEvents {
  "message:send": (payload: MessageSend, ack: (ack: Ack & Partial<MessageResult>) => void) => void;
  "messages:history": (payload: HistoryRequest, ack: (ack: Ack & Partial<HistoryResult>) => void) => void;
  "sync": (payload: SyncRequest, ack: (ack: Ack & Partial<SyncResult>) => void) => void;
  "message:read": (payload: MessageRead, ack: (ack: Ack & Partial<ReadResult>) => void) => void;
  "message:edit": (payload: MessageEdit, ack: (ack: Ack & Partial<MessageResult>) => void) => void;
  "message:delete": (payload: MessageDelete, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "message:reaction:add": (payload: ReactionChange, ack: (ack: Ack & Partial<ReactionsResult>) => void) => void;
  "message:reaction:remove": (payload: ReactionChange, ack: (ack: Ack & Partial<ReactionsResult>) => void) => void;
  "message:history:edits": (payload: EditsQuery, ack: (ack: Ack & Partial<EditsResult>) => void) => void;
  "message:pin": (payload: MessagePinChange, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "message:unpin": (payload: MessagePinChange, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "pins:list": (payload: PinsList, ack: (ack: Ack & Partial<PinsResult>) => void) => void;
  "message:forward": (payload: MessageForward, ack: (ack: Ack & Partial<MessageResult>) => void) => void;
  "message:broadcast": (payload: MessageBroadcast, ack: (ack: Ack & Partial<BroadcastResult>) => void) => void;
  "search:messages": (payload: SearchMessages, ack: (ack: Ack & Partial<SearchResults>) => void) => void;
  "conversation:mute": (payload: ChatMute, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "conversation:unmute": (payload: ChatMute, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "group:create": (payload: GroupCreate, ack: (ack: Ack & Partial<GroupResult>) => void) => void;
  "group:update": (payload: GroupUpdate, ack: (ack: Ack & Partial<GroupResult>) => void) => void;
  "group:delete": (payload: GroupRef, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "group:member:add": (payload: GroupMemberAdd, ack: (ack: Ack & Partial<GroupResult>) => void) => void;
  "group:member:remove": (payload: GroupMemberRemove, ack: (ack: Ack & Partial<GroupResult>) => void) => void;
  "group:member:role": (payload: GroupMemberRole, ack: (ack: Ack & Partial<GroupResult>) => void) => void;
  "groups:list": (payload: GroupsList, ack: (ack: Ack & Partial<GroupsResult>) => void) => void;
  "group:get": (payload: GroupRef, ack: (ack: Ack & Partial<GroupResult>) => void) => void;
  "status:set": (payload: StatusSet, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "user:block": (payload: UserRef, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "user:unblock": (payload: UserRef, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "notification:register": (payload: NotificationRegister, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "notification:unregister": (payload: NotificationUnregister, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "presence:last_seen": (payload: LastSeenQuery, ack: (ack: Ack & Partial<LastSeenResult>) => void) => void;
  "call:offer": (payload: CallOffer, ack: (ack: Ack & Partial<CallOfferResult>) => void) => void;
  "call:answer": (payload: CallAnswer, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "call:ice-candidate": (payload: CallIce) => void;
  "call:reject": (payload: CallRef, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "call:end": (payload: CallRef, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "calls:history": (payload: CallsHistory, ack: (ack: Ack & Partial<CallsHistoryResult>) => void) => void;
  "typing:start": (payload: TypingChange) => void;
  "typing:stop": (payload: TypingChange) => void;
  "presence:set": (payload: PresenceSet, ack: (ack: Ack & Partial<Empty>) => void) => void;
  "presence:query": (payload: PresenceQuery, ack: (ack: Ack & Partial<PresencePage>) => void) => void;
  "presence:subscribe": (payload: PresenceSubscribe, ack: (ack: Ack & Partial<Empty>) => void) => void;
}

export interface ServerToClientEvents {
  "message:new": (payload: SocketMessage) => void;
  "message:batch": (payload: MessageBatch) => void;
  "message:read": (payload: ReadEvent) => void;
  "message:edited": (payload: MessageEdited) => void;
  "message:deleted": (payload: MessageDeleted) => void;
  "message:reaction:added": (payload: ReactionAdded) => void;
  "message:reaction:removed": (payload: ReactionRemoved) => void;
  "message:pinned": (payload: MessagePinned) => void;
  "message:unpinned": (payload: MessageUnpinned) => void;
  "typing:start": (payload: TypingEvent) => void;
  "typing:stop": (payload: TypingEvent) => void;
  "presence:update": (payload: PresenceUpdate) => void;
  "presence:state": (payload: PresencePage) => void;
  "presence:last_seen": (payload: LastSeen) => void;
  "status:updated": (payload: StatusUpdated) => void;
  "group:member:added": (payload: GroupMemberAdded) => void;
  "group:member:removed": (payload: GroupMemberRemoved) => void;
  "group:member:role_changed": (payload: GroupMemberRoleChanged) => void;
  "group:updated": (payload: GroupUpdated) => void;
  "group:deleted": (payload: GroupDeleted) => void;
  "search:results": (payload: SearchResults) => void;
  "conversation:muted": (payload: ChatMuted) => void;
  "conversation:unmuted": (payload: ChatUnmuted) => void;
  "user:blocked": (payload: UserBlocked) => void;
  "user:unblocked": (payload: UserUnblocked) => void;
  "upload:progress": (payload: UploadProgress) => void;
  "upload:complete": (payload: UploadComplete) => void;
  "upload:failed": (payload: UploadFailed) => void;
  "call:incoming": (payload: CallIncoming) => void;
  "call:accepted": (payload: CallAccepted) => void;
  "call:rejected": (payload: CallRejected) => void;
  "call:ended": (payload: CallEnded) => void;
  "call:ice-candidate": (payload: CallIceEvent) => void;
}
