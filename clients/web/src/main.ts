// The web client: sign-in, the socket's events into State, and the view.
import { AckError, connect, request, type ChatSocket, type Group, type SocketMessage } from "./api";
import { Call } from "./call";
import { ago, focusSpot, h, restoreFocus, time } from "./dom";
import { keyOf, State, type Chat } from "./state";
import { createUpload, mediaBlob, messageType, sendBytes } from "./upload";

interface WebConfig {
  devMode: boolean;
  /** Whether this deployment forwards uploads to a media service. */
  media: boolean;
}

const QUICK_REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
const app = document.getElementById("app") as HTMLElement;

async function main(): Promise<void> {
  const config = (await (await fetch("/web-config.json")).json()) as WebConfig;
  const saved = sessionStorage.getItem("chat:token");
  if (saved) return start(saved, config);
  renderSignIn(config);
}

function renderSignIn(config: WebConfig): void {
  const error = h("p", { role: "alert", class: "error" });
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    config.devMode
      ? h("div", {},
          h("label", { for: "signin-user" }, "User name"),
          h("input", { id: "signin-user", name: "user", required: true, pattern: "[A-Za-z0-9_-]{1,64}", autocomplete: "username" }),
          h("label", { for: "signin-name" }, "Display name"),
          h("input", { id: "signin-name", name: "name" }),
          h("button", { type: "submit" }, "Sign in (development)"))
      : h("div", {},
          h("label", { for: "signin-token" }, "Access token (JWT)"),
          h("textarea", { id: "signin-token", name: "token", required: true, rows: 4 }),
          h("button", { type: "submit" }, "Sign in")),
    error,
  ) as HTMLFormElement;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    let token = String(data.get("token") ?? "");
    if (config.devMode) {
      const res = await fetch("/dev/token", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ userId: data.get("user"), name: data.get("name") || data.get("user") }) });
      const body = (await res.json()) as { token?: string; error?: string };
      if (!body.token) {
        error.textContent = body.error ?? "sign-in refused";
        return;
      }
      token = body.token;
    }
    sessionStorage.setItem("chat:token", token);
    start(token, config);
  });
  app.replaceChildren(h("main", { class: "center" }, form));
  (form.querySelector("input, textarea") as HTMLElement | null)?.focus();
}

function claims(token: string): { sub: string; name?: string } {
  const part = token.split(".")[1] ?? "";
  return JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/"))) as { sub: string; name?: string };
}

function start(token: string, config: WebConfig): void {
  const who = claims(token);
  const ui = new App(token, config, new State({ id: who.sub, name: who.name ?? who.sub }));
  (window as unknown as { chat: App }).chat = ui;
  ui.run();
}

class App {
  socket: ChatSocket;
  call: Call | null = null;
  replyTo: SocketMessage | null = null;
  editing: SocketMessage | null = null;
  notice = "";
  uploads = new Map<string, { name: string; pct: number; state: string }>();
  private typingSent = 0;
  private typingStop: number | undefined;
  private queued = false;

  constructor(readonly token: string, readonly config: WebConfig, readonly state: State) {
    this.socket = connect(token);
  }

  run(): void {
    this.layout();
    this.wire();
    setInterval(() => this.expireTyping(), 1000);
    // "last seen 5 minutes ago" ages without any event.
    setInterval(() => this.render(), 30_000);
  }

  // --- socket -------------------------------------------------------------------------

  private wire(): void {
    const s = this.socket;
    const st = this.state;
    s.on("connect", () => {
      st.connection = "online";
      void this.catchUp();
      this.render();
    });
    s.on("disconnect", () => {
      st.connection = "offline";
      this.render();
    });
    s.on("connect_error", (err) => {
      st.connection = "offline";
      if (err.message === "unauthorized") {
        sessionStorage.removeItem("chat:token");
        location.reload();
      }
      this.render();
    });
    s.on("message:new", (m) => {
      this.seenActive(m.senderId);
      st.upsert(m, true);
      this.markRead();
      this.render();
    });
    s.on("message:batch", (b) => {
      for (const m of b.messages) st.upsert(m);
      this.render();
    });
    s.on("message:read", (e) => {
      const chat = st.chat(e);
      if (e.readBy === st.me.id) return;
      for (const id of e.messageIds) chat.peerReadSeq = Math.max(chat.peerReadSeq, chat.messages.get(id)?.seq ?? 0);
      this.render();
    });
    s.on("message:edited", (e) => {
      const m = st.chat(e).messages.get(e.messageId);
      if (m) Object.assign(m, { content: e.content, editedAt: e.editedAt, isEdited: true });
      this.render();
    });
    s.on("message:deleted", (e) => {
      const chat = st.chat(e);
      if (!e.deleteForEveryone) chat.messages.delete(e.messageId);
      else {
        const m = chat.messages.get(e.messageId);
        if (m) Object.assign(m, { isDeleted: true, content: undefined, mediaUrl: undefined, deletedAt: e.deletedAt, reactions: [] });
      }
      this.render();
    });
    const react = (e: { messageId: string; userId: string; emoji: string; conversationId?: string; groupId?: string }, add: boolean) => {
      const m = st.chat(e).messages.get(e.messageId);
      if (!m) return;
      const r = m.reactions.find((x) => x.emoji === e.emoji);
      if (add && r && !r.userIds.includes(e.userId)) Object.assign(r, { count: r.count + 1, userIds: [...r.userIds, e.userId] });
      else if (add && !r) m.reactions.push({ emoji: e.emoji, count: 1, userIds: [e.userId] });
      else if (!add && r && r.userIds.includes(e.userId)) {
        Object.assign(r, { count: r.count - 1, userIds: r.userIds.filter((u) => u !== e.userId) });
        if (r.count <= 0) m.reactions = m.reactions.filter((x) => x !== r);
      }
      this.render();
    };
    s.on("message:reaction:added", (e) => react(e, true));
    s.on("message:reaction:removed", (e) => react(e, false));
    s.on("message:pinned", (e) => this.setPinned(e, e.messageId, true));
    s.on("message:unpinned", (e) => this.setPinned(e, e.messageId, false));
    s.on("typing:start", (e) => {
      this.seenActive(e.userId);
      st.chat(e.groupId || e.conversationId ? e : this.dmWith(e.userId)).typing.set(e.userId, { name: e.userName, until: Date.now() + 10_000 });
      this.render();
    });
    s.on("typing:stop", (e) => {
      st.chat(e.groupId || e.conversationId ? e : this.dmWith(e.userId)).typing.delete(e.userId);
      this.render();
    });
    s.on("presence:update", (e) => {
      const p = st.people.get(e.userId) ?? {};
      st.people.set(e.userId, { ...p, status: e.status, lastSeenAt: e.lastSeenAt ?? p.lastSeenAt, customStatus: e.customStatus ?? p.customStatus });
      this.render();
    });
    s.on("presence:state", (e) => {
      for (const userId of e.onlineUserIds) {
        const p = st.people.get(userId);
        if (!p?.status || p.status === "offline") st.people.set(userId, { ...p, status: "online" });
      }
      if (e.groupId) st.chat({ groupId: e.groupId }).online = e.total;
      this.render();
    });
    s.on("presence:last_seen", (e) => {
      st.people.set(e.userId, { ...(st.people.get(e.userId) ?? {}), lastSeenAt: e.lastSeenAt });
      this.render();
    });
    s.on("status:updated", (e) => {
      st.people.set(e.userId, { ...(st.people.get(e.userId) ?? {}), customStatus: e.status, emoji: e.emoji });
      this.render();
    });
    s.on("conversation:muted", (e) => {
      Object.assign(st.chat(e), { muted: true, mutedUntil: e.mutedUntil ?? null });
      this.render();
    });
    s.on("conversation:unmuted", (e) => {
      Object.assign(st.chat(e), { muted: false, mutedUntil: undefined });
      this.render();
    });
    s.on("user:blocked", (e) => {
      st.blockedBy.add(e.blockedBy);
      this.say(`${e.blockedBy} blocked you`);
    });
    s.on("user:unblocked", (e) => {
      st.blockedBy.delete(e.unblockedBy);
      this.say(`${e.unblockedBy} unblocked you`);
    });
    s.on("group:member:added", (e) => {
      const chat = st.chat({ groupId: e.groupId });
      chat.members.set(e.userId, e.role);
      if (e.userId === st.me.id) void this.loadGroup(e.groupId);
      this.render();
    });
    s.on("group:member:removed", (e) => {
      if (e.userId === st.me.id) this.dropChat(`g:${e.groupId}`);
      else st.chat({ groupId: e.groupId }).members.delete(e.userId);
      this.render();
    });
    s.on("group:member:role_changed", (e) => {
      st.chat({ groupId: e.groupId }).members.set(e.userId, e.role);
      if (e.userId === st.me.id) void this.loadGroup(e.groupId);
      this.render();
    });
    s.on("group:updated", (e) => {
      const chat = st.chat({ groupId: e.groupId });
      if (e.name) chat.title = e.name;
      if (chat.group) Object.assign(chat.group, { name: e.name ?? chat.group.name, description: e.description ?? chat.group.description });
      this.render();
    });
    s.on("group:deleted", (e) => {
      this.dropChat(`g:${e.groupId}`);
      this.say("A group was deleted");
    });
    s.on("upload:progress", (e) => {
      this.uploads.set(e.uploadId, { name: e.fileName, pct: e.progress, state: "uploading" });
      this.render();
    });
    s.on("upload:complete", (e) => {
      this.uploads.set(e.uploadId, { name: e.fileName, pct: 100, state: "complete" });
      this.render();
    });
    s.on("upload:failed", (e) => {
      this.uploads.set(e.uploadId, { name: e.fileName, pct: 0, state: `failed: ${e.error}` });
      this.render();
    });
    s.on("call:incoming", (e) => {
      if (this.call && this.call.phase !== "ended") return;
      this.call = Call.incoming(s, e, () => this.render());
      this.render();
      (document.getElementById("call-accept") as HTMLElement | null)?.focus();
    });
    s.on("call:accepted", (e) => {
      if (this.call?.callId === e.callId) void this.call.accepted(String(e.answer.sdp ?? ""));
    });
    s.on("call:ice-candidate", (e) => {
      if (this.call?.callId === e.callId) void this.call.candidate(e.candidate);
    });
    s.on("call:rejected", (e) => {
      if (this.call?.callId !== e.callId) return;
      this.call.close();
      this.say(`Call ${e.reason}`);
    });
    s.on("call:ended", (e) => {
      if (this.call?.callId !== e.callId) return;
      this.call.close();
      this.say(`Call ended (${e.reason})`);
    });
  }

  /** A user who just sent something live is connected: until the server says more
   * (presence:update comes on changes only), show them online. */
  private seenActive(userId: string): void {
    const p = this.state.people.get(userId);
    if (userId !== this.state.me.id && !p?.status) this.state.people.set(userId, { ...p, status: "online" });
  }

  private dmWith(userId: string): { conversationId?: string } {
    for (const chat of this.state.chats.values()) if (chat.peerId === userId) return { conversationId: chat.conversationId };
    return { conversationId: `pending-${userId}` };
  }

  /** After every (re)connect: catch up with `sync` from what this device holds. */
  private async catchUp(): Promise<void> {
    try {
      const [synced, groups] = await Promise.all([
        request(this.socket, "sync", { since: this.state.cursors() }),
        request(this.socket, "groups:list", {}),
      ]);
      for (const row of synced.chats ?? []) this.state.applySync(row);
      for (const g of groups.groups ?? []) this.setGroup(g);
      for (const chat of this.state.chats.values()) if (chat.conversationId && !chat.peerId) void this.findPeer(chat);
      const peers = [...this.state.chats.values()].map((c) => c.peerId).filter((p): p is string => !!p);
      if (peers.length) {
        const seen = await request(this.socket, "presence:last_seen", { userIds: peers.slice(0, 500) }).catch(() => null);
        for (const row of seen?.lastSeen ?? []) this.state.people.set(row.userId, { ...(this.state.people.get(row.userId) ?? {}), lastSeenAt: row.lastSeenAt });
      }
      this.markRead();
      this.render();
    } catch (err) {
      this.say(`Catching up failed: ${(err as Error).message}`);
    }
  }

  private async findPeer(chat: Chat): Promise<void> {
    const page = await request(this.socket, "messages:history", { conversationId: chat.conversationId, limit: 20 }).catch(() => null);
    for (const m of page?.messages ?? []) this.state.upsert(m);
    this.render();
  }

  private setGroup(g: Group): void {
    const chat = this.state.chat({ groupId: g.id });
    chat.group = g;
    chat.title = g.name;
  }

  private async loadGroup(groupId: string): Promise<void> {
    const ack = await request(this.socket, "group:get", { groupId }).catch(() => null);
    if (ack?.group) this.setGroup(ack.group);
    this.render();
  }

  private dropChat(key: string): void {
    this.state.chats.delete(key);
    if (this.state.current === key) this.state.current = null;
    this.render();
  }

  private setPinned(target: { conversationId?: string; groupId?: string }, id: string, pinned: boolean): void {
    const m = this.state.chat(target).messages.get(id);
    if (m) m.pinned = pinned;
    this.render();
  }

  private expireTyping(): void {
    const now = Date.now();
    let changed = false;
    for (const chat of this.state.chats.values())
      for (const [id, t] of chat.typing)
        if (t.until < now) {
          chat.typing.delete(id);
          changed = true;
        }
    if (changed) this.render();
  }

  // --- actions ------------------------------------------------------------------------

  private currentChat(): Chat | null {
    return this.state.current ? this.state.chats.get(this.state.current) ?? null : null;
  }

  private target(chat: Chat): { conversationId?: string; groupId?: string } {
    return chat.groupId ? { groupId: chat.groupId } : { conversationId: chat.conversationId };
  }

  private async guard(what: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      const code = err instanceof AckError ? err.ack.code : undefined;
      this.say(code === "NOT_IMPLEMENTED" ? `${what}: not available on this server yet` : `${what} failed: ${(err as Error).message}`);
    }
  }

  say(text: string): void {
    this.notice = text;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = window.setTimeout(() => {
      this.notice = "";
      this.render();
    }, 5000);
    this.render();
  }

  private noticeTimer: number | undefined;

  async open(key: string): Promise<void> {
    this.state.current = key;
    this.replyTo = null;
    this.editing = null;
    const chat = this.state.chats.get(key);
    if (!chat) return;
    this.render();
    if (chat.messages.size < 30 && chat.hasMore) await this.older(chat);
    if (chat.groupId) void this.guard("Presence", () => request(this.socket, "presence:subscribe", { groupId: chat.groupId ?? "" }));
    if (chat.peerId) {
      const seen = await request(this.socket, "presence:last_seen", { userIds: [chat.peerId] }).catch(() => null);
      for (const row of seen?.lastSeen ?? []) this.state.people.set(row.userId, { ...(this.state.people.get(row.userId) ?? {}), lastSeenAt: row.lastSeenAt });
    }
    this.markRead();
    this.render();
    (document.getElementById("composer-text") as HTMLElement | null)?.focus();
  }

  /** Infinite scroll: the page before the oldest message held. */
  async older(chat: Chat): Promise<void> {
    if (!chat.hasMore || !chat.conversationId && !chat.groupId) return;
    const oldest = Math.min(...[...chat.messages.values()].map((m) => m.seq), Number.MAX_SAFE_INTEGER);
    const page = await request(this.socket, "messages:history", {
      ...this.target(chat),
      limit: 30,
      ...(oldest < Number.MAX_SAFE_INTEGER ? { beforeSeq: oldest } : {}),
    }).catch(() => null);
    if (!page) return;
    for (const m of page.messages ?? []) this.state.upsert(m);
    chat.hasMore = page.hasMore ?? false;
    this.render();
  }

  private markRead(): void {
    const chat = this.currentChat();
    if (!chat || document.visibilityState === "hidden") return;
    chat.unread = 0;
    const unread = [...chat.messages.values()].filter((m) => m.seq > chat.myReadSeq && m.senderId !== this.state.me.id && !m.isDeleted);
    if (!unread.length) return;
    chat.myReadSeq = Math.max(...unread.map((m) => m.seq));
    const target = chat.groupId ? { groupId: chat.groupId } : { conversationId: chat.conversationId };
    void request(this.socket, "message:read", { messageIds: unread.map((m) => m.id).slice(-500), ...target }).catch(() => undefined);
  }

  async newChat(userId: string, firstText: string): Promise<void> {
    await this.guard("New chat", async () => {
      const ack = await request(this.socket, "message:send", { clientMessageId: crypto.randomUUID(), targetUserId: userId, type: "TEXT", content: firstText });
      if (!ack.message) return;
      const chat = this.state.upsert(ack.message);
      this.state.learnPeer(chat, userId);
      await this.open(chat.key);
    });
  }

  async send(text: string): Promise<void> {
    const chat = this.currentChat();
    if (!chat || !text.trim()) return;
    if (this.editing) {
      const m = this.editing;
      this.editing = null;
      return this.guard("Edit", async () => {
        const ack = await request(this.socket, "message:edit", { messageId: m.id, content: text, ...this.target(chat) });
        if (ack.message) this.state.upsert(ack.message);
        this.render();
      });
    }
    const reply = this.replyTo;
    this.replyTo = null;
    this.stopTyping();
    await this.guard("Send", async () => {
      const ack = await request(this.socket, "message:send", { clientMessageId: crypto.randomUUID(), ...this.target(chat), type: "TEXT", content: text, ...(reply ? { replyToId: reply.id } : {}) });
      if (ack.message) this.state.upsert(ack.message);
      this.render();
    });
  }

  typing(): void {
    const chat = this.currentChat();
    if (!chat) return;
    const now = Date.now();
    if (now - this.typingSent > 2000) {
      this.socket.emit("typing:start", this.target(chat));
      this.typingSent = now;
    }
    clearTimeout(this.typingStop);
    this.typingStop = window.setTimeout(() => this.stopTyping(), 3000);
  }

  private stopTyping(): void {
    const chat = this.currentChat();
    clearTimeout(this.typingStop);
    if (chat && this.typingSent) this.socket.emit("typing:stop", this.target(chat));
    this.typingSent = 0;
  }

  async react(chat: Chat, m: SocketMessage, emoji: string): Promise<void> {
    const mine = m.reactions.find((r) => r.emoji === emoji)?.userIds.includes(this.state.me.id);
    await this.guard("Reaction", async () => {
      const ack = await request(this.socket, mine ? "message:reaction:remove" : "message:reaction:add", { messageId: m.id, emoji, ...this.target(chat) });
      if (ack.reactions) m.reactions = ack.reactions;
      this.render();
    });
  }

  async remove(chat: Chat, m: SocketMessage, forEveryone: boolean): Promise<void> {
    await this.guard("Delete", async () => {
      await request(this.socket, "message:delete", { messageId: m.id, deleteForEveryone: forEveryone, ...this.target(chat) });
      if (forEveryone) Object.assign(m, { isDeleted: true, content: undefined, mediaUrl: undefined, reactions: [] });
      else chat.messages.delete(m.id);
      this.render();
    });
  }

  async pin(chat: Chat, m: SocketMessage): Promise<void> {
    await this.guard(m.pinned ? "Unpin" : "Pin", async () => {
      await request(this.socket, m.pinned ? "message:unpin" : "message:pin", { messageId: m.id, ...this.target(chat) });
      m.pinned = !m.pinned;
      this.render();
    });
  }

  async upload(file: File): Promise<void> {
    const chat = this.currentChat();
    if (!chat) return;
    await this.guard("Upload", async () => {
      const created = await createUpload(this.token, file);
      this.uploads.set(created.uploadId, { name: file.name, pct: 0, state: "uploading" });
      this.render();
      const done = await sendBytes(this.token, created, file, (pct) => {
        const u = this.uploads.get(created.uploadId);
        if (u && u.state === "uploading" && pct > u.pct) u.pct = pct;
        this.render();
      });
      const mediaUrl = done.mediaUrl ?? (await this.waitComplete(created.uploadId));
      this.uploads.set(created.uploadId, { name: file.name, pct: 100, state: "complete" });
      const ack = await request(this.socket, "message:send", { clientMessageId: crypto.randomUUID(), ...this.target(chat), type: messageType(file), mediaUrl, content: file.name });
      if (ack.message) this.state.upsert(ack.message);
      this.render();
    });
  }

  private waitComplete(uploadId: string): Promise<string> {
    return new Promise((resolve) => {
      const handler = (e: { uploadId: string; mediaUrl: string }) => {
        if (e.uploadId !== uploadId) return;
        this.socket.off("upload:complete", handler);
        resolve(e.mediaUrl);
      };
      this.socket.on("upload:complete", handler);
    });
  }

  async startCall(kind: "audio" | "video"): Promise<void> {
    const chat = this.currentChat();
    if (!chat?.peerId) return;
    await this.guard("Call", async () => {
      this.call = await Call.start(this.socket, chat.peerId ?? "", kind, () => this.render());
      this.call.peerName = chat.title;
      this.render();
    });
  }

  // --- view ---------------------------------------------------------------------------

  private layout(): void {
    app.replaceChildren(
      h("div", { class: "shell" },
        h("header", { class: "top", id: "top" }),
        h("nav", { class: "side", id: "side", "aria-label": "Chats" }),
        h("main", { class: "pane", id: "pane" }),
      ),
      h("div", { id: "notice", role: "status", "aria-live": "polite", class: "notice" }),
      h("section", { id: "call", "aria-label": "Call", class: "call", hidden: true }),
      h("dialog", { id: "dialog", "aria-modal": "true" }),
    );
    this.render();
  }

  render(): void {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      const focus = focusSpot();
      this.renderTop();
      this.renderSide();
      this.renderPane();
      this.renderCall();
      restoreFocus(focus);
      const notice = document.getElementById("notice");
      if (notice && notice.textContent !== this.notice) notice.textContent = this.notice;
    });
  }

  private renderTop(): void {
    const st = this.state;
    const me = st.people.get(st.me.id);
    const presence = h("select", { id: "my-presence", "aria-label": "My presence" },
      ...["online", "away", "busy"].map((v) => h("option", { value: v, selected: (me?.status ?? "online") === v }, v)));
    presence.addEventListener("change", () => void this.guard("Presence", () => request(this.socket, "presence:set", { status: (presence as HTMLSelectElement).value as "online" | "away" | "busy" })));
    document.getElementById("top")?.replaceChildren(
      h("span", { class: "me" }, h("strong", {}, st.me.name), ` (${st.me.id})`),
      h("span", { class: `conn conn-${st.connection}`, role: "status", "aria-label": "Connection", "data-state": st.connection }, st.connection === "online" ? "Connected" : st.connection === "offline" ? "Offline — reconnecting…" : "Connecting…"),
      presence,
      h("button", { type: "button", onclick: () => this.statusDialog() }, me?.customStatus ? `${me.emoji ?? ""} ${me.customStatus}` : "Set status"),
      h("button", { type: "button", onclick: () => this.searchDialog() }, "Search"),
      h("button", { type: "button", onclick: () => { sessionStorage.removeItem("chat:token"); location.reload(); } }, "Sign out"),
    );
  }

  private dot(userId: string | undefined): HTMLElement {
    const status = (userId && this.state.people.get(userId)?.status) || "offline";
    return h("span", { class: `dot dot-${status}`, role: "img", "aria-label": status, title: status });
  }

  private renderSide(): void {
    const st = this.state;
    const chats = [...st.chats.values()].filter((c) => !c.conversationId?.startsWith("pending-"))
      .sort((a, b) => lastTime(b) - lastTime(a));
    const form = h("form", { class: "newchat", "aria-label": "New chat" },
      h("label", { for: "new-peer" }, "Message a user"),
      h("input", { id: "new-peer", name: "peer", placeholder: "user id", required: true }),
      h("button", { type: "submit" }, "Start")) as HTMLFormElement;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const peer = String(new FormData(form).get("peer") ?? "").trim();
      if (peer) void this.newChat(peer, "👋");
    });
    document.getElementById("side")?.replaceChildren(
      form,
      h("button", { type: "button", class: "newgroup", onclick: () => this.groupDialog(null) }, "New group"),
      h("ul", { class: "chats", role: "list" },
        ...chats.map((c) => h("li", {},
          h("button", { type: "button", class: `chat${st.current === c.key ? " active" : ""}`, "aria-current": st.current === c.key ? "true" : null, "data-chat": c.key, onclick: () => void this.open(c.key) },
            c.groupId ? h("span", { class: "dot dot-group", "aria-hidden": "true" }, "#") : this.dot(c.peerId),
            h("span", { class: "title" }, c.title),
            c.muted ? h("span", { class: "muted", "aria-label": "muted", title: "muted" }, "🔕") : null,
            c.typing.size ? h("span", { class: "typing-mini" }, "typing…") : null,
            c.unread ? h("span", { class: "badge", "aria-label": `${c.unread} unread` }, String(c.unread)) : null)))),
    );
  }

  private renderPane(): void {
    const pane = document.getElementById("pane");
    if (!pane) return;
    const chat = this.currentChat();
    if (!chat) {
      pane.replaceChildren(h("p", { class: "empty" }, "Choose a chat, or message a user by id."));
      return;
    }
    const st = this.state;
    const peer = chat.peerId ? st.people.get(chat.peerId) : undefined;
    const sub = chat.groupId
      ? `${chat.group?.memberCount ?? "?"} members${chat.online ? `, ${chat.online} online` : ""}${chat.group?.description ? ` · ${chat.group.description}` : ""}`
      : peer?.status && peer.status !== "offline"
        ? peer.status
        : peer?.lastSeenAt ? `last seen ${ago(peer.lastSeenAt)}` : "offline";
    const typing = [...chat.typing.values()].map((t) => t.name);
    const blocked = chat.peerId ? st.blocked.has(chat.peerId) : false;
    const header = h("div", { class: "chathead" },
      h("div", {},
        h("h2", { id: "chat-title" }, chat.groupId ? null : this.dot(chat.peerId), chat.title),
        h("p", { class: "sub", id: "chat-sub" }, sub, peer?.customStatus ? ` · ${peer.emoji ?? ""} ${peer.customStatus}` : "")),
      h("div", { class: "actions", role: "toolbar", "aria-label": "Chat actions" },
        chat.peerId ? h("button", { type: "button", onclick: () => void this.startCall("audio") }, "Audio call") : null,
        chat.peerId ? h("button", { type: "button", onclick: () => void this.startCall("video") }, "Video call") : null,
        h("button", { type: "button", onclick: () => void this.pinsDialog(chat) }, "Pins"),
        h("button", { type: "button", onclick: () => void this.toggleMute(chat) }, chat.muted ? "Unmute" : "Mute"),
        chat.peerId ? h("button", { type: "button", onclick: () => void this.toggleBlock(chat.peerId ?? "") }, blocked ? "Unblock" : "Block") : null,
        chat.groupId ? h("button", { type: "button", onclick: () => this.groupDialog(chat) }, "Manage group") : null));
    const log = h("ol", { class: "log", role: "log", "aria-label": `Messages with ${chat.title}`, "aria-live": "polite", id: "log" },
      chat.hasMore ? h("li", { class: "more" }, h("button", { type: "button", onclick: () => void this.older(chat) }, "Load older messages")) : null,
      ...st.ordered(chat).map((m) => this.messageItem(chat, m)));
    const old = document.getElementById("log");
    const atBottom = !old || old.scrollHeight - old.scrollTop - old.clientHeight < 40;
    const prevHeight = old?.scrollHeight ?? 0;
    const prevTop = old?.scrollTop ?? 0;
    log.addEventListener("scroll", () => {
      if (log.scrollTop < 20) void this.older(chat);
    });
    const composer = this.composer(chat, typing);
    pane.replaceChildren(header, log, composer);
    if (atBottom) log.scrollTop = log.scrollHeight;
    else log.scrollTop = prevTop + (log.scrollHeight - prevHeight);
  }

  private composerEl: HTMLFormElement | null = null;
  private composerChat = "";

  private composer(chat: Chat, typing: string[]): HTMLElement {
    // The composer keeps its element (and the text being typed) across renders.
    if (!this.composerEl || this.composerChat !== chat.key) {
      this.composerChat = chat.key;
      const text = h("textarea", { id: "composer-text", name: "text", rows: 2, "aria-label": "Message", placeholder: "Write a message" }) as HTMLTextAreaElement;
      const file = h("input", { type: "file", id: "composer-file", "aria-label": "Attach a file", class: "file", disabled: !this.config.media, title: this.config.media ? null : "uploads are not available on this server" }) as HTMLInputElement;
      text.addEventListener("input", () => this.typing());
      text.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !e.shiftKey) {
          e.preventDefault();
          form.requestSubmit();
        } else if (e.key === "Escape") {
          this.replyTo = null;
          this.editing = null;
          this.render();
        }
      });
      file.addEventListener("change", () => {
        const f = file.files?.[0];
        if (f) void this.upload(f);
        file.value = "";
      });
      const form = h("form", { class: "composer", "aria-label": "Send a message" },
        h("div", { id: "composer-context" }),
        h("div", { class: "row" }, file, text, h("button", { type: "submit" }, "Send"))) as HTMLFormElement;
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const value = text.value;
        text.value = "";
        void this.send(value);
      });
      this.composerEl = form;
    }
    const context = this.composerEl.querySelector("#composer-context") as HTMLElement;
    context.replaceChildren(...[
      h("p", { class: "typing", "aria-live": "polite", id: "typing" }, typing.length ? `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…` : ""),
      ...[...this.uploads.entries()].filter(([, u]) => u.state !== "complete" || u.pct === 100).slice(-3).map(([id, u]) =>
        h("div", { class: "upload", "data-upload": id },
          h("label", { for: `up-${id}` }, `${u.name}: ${u.state === "complete" ? "uploaded" : u.state}`),
          h("progress", { id: `up-${id}`, max: 100, value: u.pct, "aria-valuenow": u.pct }, `${u.pct}%`),
          h("span", { class: "pct" }, `${u.pct}%`))),
      this.replyTo ? h("div", { class: "replying" }, `Replying to ${this.replyTo.senderName}: ${(this.replyTo.content ?? "").slice(0, 80)}`,
        h("button", { type: "button", "aria-label": "Cancel reply", onclick: () => { this.replyTo = null; this.render(); } }, "✕")) : null,
      this.editing ? h("div", { class: "replying" }, "Editing message",
        h("button", { type: "button", "aria-label": "Cancel edit", onclick: () => { this.editing = null; this.render(); } }, "✕")) : null,
    ].filter((x): x is HTMLElement => x !== null));
    return this.composerEl;
  }

  private messageItem(chat: Chat, m: SocketMessage): HTMLElement {
    const mine = m.senderId === this.state.me.id;
    const read = mine && !chat.groupId && chat.peerReadSeq >= m.seq;
    const body = m.isDeleted
      ? h("p", { class: "deleted" }, "This message was deleted")
      : h("div", {},
          m.forwardedFrom ? h("p", { class: "fwd" }, `Forwarded from ${m.forwardedFrom.senderName}`) : null,
          m.replyTo ? h("blockquote", { class: "quote" }, h("strong", {}, m.replyTo.senderName), " ", m.replyTo.content || "deleted message") : null,
          m.mediaUrl ? this.media(m) : null,
          m.content && !(m.mediaUrl && m.type !== "TEXT" && m.content) ? h("p", { class: "text" }, m.content) : m.mediaUrl ? h("p", { class: "text" }, m.content ?? "") : null);
    return h("li", { class: `msg${mine ? " mine" : ""}${m.pinned ? " pinned" : ""}`, "data-id": m.id, "data-seq": m.seq, tabindex: 0, "aria-label": `${m.senderName} at ${time(m.createdAt)}` },
      h("div", { class: "meta" },
        h("strong", {}, m.senderName), " ", h("time", { datetime: m.createdAt }, time(m.createdAt)),
        m.isEdited && !m.isDeleted ? h("button", { type: "button", class: "edited linklike", onclick: () => void this.editsDialog(m) }, "edited") : null,
        m.pinned ? h("span", { class: "pin", "aria-label": "pinned" }, "📌") : null,
        mine ? h("span", { class: `ticks${read ? " read" : ""}`, "aria-label": read ? "read" : "sent", "data-ticks": read ? "read" : "sent" }, read ? "✓✓" : "✓") : null),
      body,
      m.reactions.length ? h("div", { class: "reactions", role: "group", "aria-label": "Reactions" },
        ...m.reactions.map((r) => h("button", { type: "button", class: `reaction${r.userIds.includes(this.state.me.id) ? " mine" : ""}`, "aria-pressed": r.userIds.includes(this.state.me.id) ? "true" : "false", "aria-label": `${r.emoji} ${r.count}`, onclick: () => void this.react(chat, m, r.emoji) }, `${r.emoji} ${r.count}`))) : null,
      m.isDeleted ? null : h("div", { class: "tools", role: "toolbar", "aria-label": "Message actions" },
        ...QUICK_REACTIONS.map((e) => h("button", { type: "button", class: "react", "aria-label": `React ${e}`, onclick: () => void this.react(chat, m, e) }, e)),
        h("button", { type: "button", onclick: () => { this.replyTo = m; this.render(); (document.getElementById("composer-text") as HTMLElement | null)?.focus(); } }, "Reply"),
        mine && m.type === "TEXT" ? h("button", { type: "button", onclick: () => { this.editing = m; const t = document.getElementById("composer-text") as HTMLTextAreaElement | null; if (t) { t.value = m.content ?? ""; t.focus(); } this.render(); } }, "Edit") : null,
        h("button", { type: "button", onclick: () => void this.pin(chat, m) }, m.pinned ? "Unpin" : "Pin"),
        h("button", { type: "button", onclick: () => this.forwardDialog(m) }, "Forward"),
        h("button", { type: "button", onclick: () => void this.remove(chat, m, false) }, "Delete for me"),
        mine ? h("button", { type: "button", onclick: () => void this.remove(chat, m, true) }, "Delete for everyone") : null));
  }

  private media(m: SocketMessage): HTMLElement {
    const url = m.mediaUrl ?? "";
    if (m.type === "IMAGE") {
      const img = h("img", { class: "thumb", alt: m.content || "image", loading: "lazy" }) as HTMLImageElement;
      void mediaBlob(this.token, `${url}/thumbnail`).catch(() => mediaBlob(this.token, url)).then((src) => { img.src = src; }, () => { img.alt = "image unavailable"; });
      return img;
    }
    const link = h("a", { href: "#", class: "file" }, `📎 ${m.content || m.type.toLowerCase()}`) as HTMLAnchorElement;
    link.addEventListener("click", (e) => {
      e.preventDefault();
      void mediaBlob(this.token, url).then((src) => window.open(src, "_blank"));
    });
    return link;
  }

  private renderCall(): void {
    const panel = document.getElementById("call") as HTMLElement;
    const call = this.call;
    if (!call || call.phase === "ended") {
      panel.hidden = true;
      panel.replaceChildren();
      return;
    }
    panel.hidden = false;
    if (panel.dataset.callId === (call.callId ?? "") && panel.dataset.phase === call.phase) return;
    panel.dataset.callId = call.callId ?? "";
    panel.dataset.phase = call.phase;
    const remote = h("video", { autoplay: true, playsinline: true, class: "remote", "aria-label": "Remote video" }) as HTMLVideoElement;
    remote.srcObject = call.remote;
    const local = h("video", { autoplay: true, playsinline: true, muted: true, class: "local", "aria-label": "My video" }) as HTMLVideoElement;
    local.muted = true;
    local.srcObject = call.local;
    panel.replaceChildren(
      h("h2", {}, `${call.kind === "video" ? "Video" : "Audio"} call with ${call.peerName}`),
      h("p", { id: "call-state", role: "status", "data-state": call.phase }, call.phase === "ringing" ? "Incoming call…" : call.phase === "calling" ? "Calling…" : call.phase === "connecting" ? "Connecting…" : "Connected"),
      call.kind === "video" ? h("div", { class: "videos" }, remote, local) : h("audio", { autoplay: true }),
      call.phase === "ringing"
        ? h("div", { class: "row" },
            h("button", { type: "button", id: "call-accept", onclick: () => void this.guard("Answer", () => call.accept()) }, "Accept"),
            h("button", { type: "button", onclick: () => void call.reject() }, "Decline"))
        : h("button", { type: "button", id: "call-hangup", onclick: () => void call.hangUp() }, "Hang up"),
    );
    const audio = panel.querySelector("audio");
    if (audio) audio.srcObject = call.remote;
  }

  // --- dialogs ------------------------------------------------------------------------

  private dialog(title: string, ...content: (Node | null)[]): HTMLDialogElement {
    const d = document.getElementById("dialog") as HTMLDialogElement;
    d.setAttribute("aria-labelledby", "dialog-title");
    d.replaceChildren(h("h2", { id: "dialog-title" }, title), ...content.filter((c): c is Node => !!c),
      h("form", { method: "dialog" }, h("button", { type: "submit" }, "Close")));
    if (!d.open) d.showModal();
    return d;
  }

  private statusDialog(): void {
    const form = h("form", {},
      h("label", { for: "status-text" }, "Status"), h("input", { id: "status-text", name: "status", maxlength: 140 }),
      h("label", { for: "status-emoji" }, "Emoji"), h("input", { id: "status-emoji", name: "emoji", maxlength: 8 }),
      h("label", { for: "status-hours" }, "Clear after (hours, empty = never)"), h("input", { id: "status-hours", name: "hours", type: "number", min: 1 }),
      h("button", { type: "submit" }, "Save")) as HTMLFormElement;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const hours = Number(data.get("hours") || 0);
      void this.guard("Status", async () => {
        await request(this.socket, "status:set", {
          status: String(data.get("status") ?? ""),
          ...(data.get("emoji") ? { emoji: String(data.get("emoji")) } : {}),
          ...(hours ? { expiresAt: new Date(Date.now() + hours * 3600_000).toISOString() } : {}),
        });
        (document.getElementById("dialog") as HTMLDialogElement).close();
      });
    });
    this.dialog("Custom status", form);
  }

  private searchDialog(): void {
    const results = h("ol", { class: "results", "aria-label": "Search results" });
    const form = h("form", { role: "search" },
      h("label", { for: "search-q" }, "Search messages"), h("input", { id: "search-q", name: "q", type: "search", required: true }),
      h("button", { type: "submit" }, "Search")) as HTMLFormElement;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const query = String(new FormData(form).get("q") ?? "");
      void this.guard("Search", async () => {
        const ack = await request(this.socket, "search:messages", { query, limit: 30 });
        results.replaceChildren(...(ack.results ?? []).map((m) => h("li", {},
          h("button", { type: "button", class: "linklike", onclick: () => { (document.getElementById("dialog") as HTMLDialogElement).close(); void this.open(keyOf(m)); } },
            `${m.senderName}: ${m.content ?? ""}`))));
        if (!ack.results?.length) results.replaceChildren(h("li", {}, "No results"));
      });
    });
    this.dialog("Search", form, results);
  }

  private async editsDialog(m: SocketMessage): Promise<void> {
    await this.guard("Edit history", async () => {
      const ack = await request(this.socket, "message:history:edits", { messageId: m.id });
      this.dialog("Edit history", h("ol", {}, ...(ack.edits ?? []).map((e) => h("li", {}, h("time", { datetime: e.editedAt }, time(e.editedAt)), " ", e.content)),
        h("li", {}, h("strong", {}, "now: "), m.content ?? "")));
    });
  }

  private async pinsDialog(chat: Chat): Promise<void> {
    await this.guard("Pins", async () => {
      const ack = await request(this.socket, "pins:list", this.target(chat));
      this.dialog("Pinned messages", h("ul", {}, ...(ack.messages ?? []).map((m) => h("li", {}, `${m.senderName}: ${m.content ?? m.type}`))));
    });
  }

  private forwardDialog(m: SocketMessage): void {
    const chats = [...this.state.chats.values()].filter((c) => c.key !== this.state.current);
    this.dialog("Forward to…", h("ul", {}, ...chats.map((c) => h("li", {},
      h("button", { type: "button", onclick: () => void this.guard("Forward", async () => {
        const ack = await request(this.socket, "message:forward", { messageId: m.id, ...(c.groupId ? { targetGroupId: c.groupId } : { targetConversationId: c.conversationId }) });
        if (ack.message) this.state.upsert(ack.message);
        (document.getElementById("dialog") as HTMLDialogElement).close();
        this.say(`Forwarded to ${c.title}`);
      }) }, c.title)))));
  }

  private async toggleMute(chat: Chat): Promise<void> {
    await this.guard(chat.muted ? "Unmute" : "Mute", async () => {
      await request(this.socket, chat.muted ? "conversation:unmute" : "conversation:mute", this.target(chat));
      chat.muted = !chat.muted;
      this.render();
    });
  }

  private async toggleBlock(userId: string): Promise<void> {
    const blocked = this.state.blocked.has(userId);
    await this.guard(blocked ? "Unblock" : "Block", async () => {
      await request(this.socket, blocked ? "user:unblock" : "user:block", { userId });
      if (blocked) this.state.blocked.delete(userId);
      else this.state.blocked.add(userId);
      this.render();
    });
  }

  private groupDialog(chat: Chat | null): void {
    if (!chat) {
      const form = h("form", {},
        h("label", { for: "group-name" }, "Name"), h("input", { id: "group-name", name: "name", required: true, maxlength: 100 }),
        h("label", { for: "group-members" }, "Members (user ids, comma-separated)"), h("input", { id: "group-members", name: "members" }),
        h("button", { type: "submit" }, "Create group")) as HTMLFormElement;
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const data = new FormData(form);
        const memberIds = String(data.get("members") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
        void this.guard("Create group", async () => {
          const ack = await request(this.socket, "group:create", { name: String(data.get("name")), memberIds });
          if (ack.group) {
            this.setGroup(ack.group);
            (document.getElementById("dialog") as HTMLDialogElement).close();
            await this.open(`g:${ack.group.id}`);
          }
        });
      });
      this.dialog("New group", form);
      return;
    }
    const groupId = chat.groupId ?? "";
    const admin = chat.group?.myRole === "ADMIN";
    const act = (what: string, fn: () => Promise<unknown>) => void this.guard(what, async () => { await fn(); this.say(`${what}: done`); void this.loadGroup(groupId); });
    const field = (id: string, label: string) => [h("label", { for: id }, label), h("input", { id, name: id })];
    const value = (id: string) => (document.getElementById(id) as HTMLInputElement).value.trim();
    this.dialog(`Manage ${chat.title}`,
      h("ul", { "aria-label": "Known members" }, ...[...chat.members.entries()].map(([u, r]) => h("li", {}, `${u} (${r})`))),
      admin ? h("div", { class: "grid" },
        ...field("g-name", "New name"), h("button", { type: "button", onclick: () => act("Rename", () => request(this.socket, "group:update", { groupId, name: value("g-name") })) }, "Rename"),
        ...field("g-add", "Add member (user id)"), h("button", { type: "button", onclick: () => act("Add member", () => request(this.socket, "group:member:add", { groupId, userId: value("g-add") })) }, "Add"),
        ...field("g-admin", "Make admin (user id)"), h("button", { type: "button", onclick: () => act("Make admin", () => request(this.socket, "group:member:role", { groupId, userId: value("g-admin"), role: "ADMIN" })) }, "Make admin"),
        ...field("g-remove", "Remove member (user id)"), h("button", { type: "button", onclick: () => act("Remove member", () => request(this.socket, "group:member:remove", { groupId, userId: value("g-remove") })) }, "Remove"),
        h("button", { type: "button", class: "danger", onclick: () => act("Delete group", () => request(this.socket, "group:delete", { groupId })) }, "Delete group")) : null,
      h("button", { type: "button", onclick: () => act("Leave group", () => request(this.socket, "group:member:remove", { groupId, userId: this.state.me.id })) }, "Leave group"),
    );
  }
}

function lastTime(chat: Chat): number {
  let best = 0;
  for (const m of chat.messages.values()) best = Math.max(best, new Date(m.createdAt).getTime());
  return best || chat.lastSeq;
}

void main();
