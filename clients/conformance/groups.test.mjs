// Group management and its events (frontend-requests.md section 10), across two gateways.
import assert from "node:assert/strict";
import { test } from "node:test";
import { assertKeys, connect, next, ok, refusedWith, send, uid } from "./lib.mjs";

const GROUP_KEYS = [["id", "name", "createdBy", "createdAt", "memberCount", "myRole"], ["description", "avatarUrl"]];

async function trio() {
  const [a, b, c] = [uid("ann"), uid("ben"), uid("cat")];
  const ann = await connect(a, { name: "Ann" });
  const ben = await connect(b, { gateway: 1, name: "Ben" });
  const cat = await connect(c, { gateway: 1, name: "Cat" });
  return { a, b, c, ann, ben, cat };
}

test("group:create: every member learns with group:member:added (its own userId included)", async () => {
  const { a, b, c, ann, ben, cat } = await trio();
  const created = await ok(ann, "group:create", { name: "Trio", description: "three", memberIds: [b, c] });
  assertKeys(created.group, ...GROUP_KEYS, "Group");
  assert.equal(created.group.myRole, "ADMIN");
  assert.equal(created.group.memberCount, 3);
  const groupId = created.group.id;
  for (const [sock, me] of [[ben, b], [cat, c]]) {
    const added = await next(sock, "group:member:added", (e) => e.groupId === groupId && e.userId === me);
    assertKeys(added, ["groupId", "userId", "addedBy", "role"], [], "group:member:added");
    assert.equal(added.addedBy, a);
    assert.equal(added.role, "MEMBER");
  }
  // The new member may talk in the group at once, on the other gateway.
  const m = await send(ben, { groupId }, "hi all");
  assert.equal((await next(ann, "message:new", (x) => x.id === m.id)).groupId, groupId);
  assert.equal((await next(cat, "message:new", (x) => x.id === m.id)).senderName, "Ben");
  const mine = await ok(cat, "groups:list", {});
  assert.ok(mine.groups.some((g) => g.id === groupId && g.myRole === "MEMBER"));
  assert.equal((await ok(cat, "group:get", { groupId })).group.name, "Trio");
});

test("group:update, member add/role/remove and delete reach every member with the request list's payloads", async () => {
  const { a, b, c, ann, ben, cat } = await trio();
  const groupId = (await ok(ann, "group:create", { name: "Ops", memberIds: [b] })).group.id;
  await next(ben, "group:member:added", (e) => e.groupId === groupId && e.userId === b);

  await ok(ann, "group:update", { groupId, name: "Ops 2", description: "renamed" });
  const updated = await next(ben, "group:updated", (e) => e.groupId === groupId);
  assertKeys(updated, ["groupId", "updatedBy"], ["name", "description", "avatarUrl"], "group:updated");
  assert.equal(updated.name, "Ops 2");
  assert.equal(updated.updatedBy, a);

  await ok(ann, "group:member:add", { groupId, userId: c });
  assert.equal((await next(cat, "group:member:added", (e) => e.groupId === groupId)).userId, c);
  assert.equal((await next(ben, "group:member:added", (e) => e.groupId === groupId && e.userId === c)).addedBy, a);

  await ok(ann, "group:member:role", { groupId, userId: b, role: "ADMIN" });
  const role = await next(cat, "group:member:role_changed", (e) => e.groupId === groupId);
  assertKeys(role, ["groupId", "userId", "role", "changedBy"], [], "group:member:role_changed");
  assert.deepEqual([role.userId, role.role, role.changedBy], [b, "ADMIN", a]);

  await ok(ben, "group:member:remove", { groupId, userId: c });
  const removed = await next(cat, "group:member:removed", (e) => e.groupId === groupId);
  assertKeys(removed, ["groupId", "userId", "removedBy"], [], "group:member:removed");
  assert.deepEqual([removed.userId, removed.removedBy], [c, b]);
  await refusedWith(cat, "messages:history", { groupId }, "FORBIDDEN");

  await ok(ann, "group:delete", { groupId });
  const deleted = await next(ben, "group:deleted", (e) => e.groupId === groupId);
  assertKeys(deleted, ["groupId", "deletedBy"], [], "group:deleted");
  assert.equal(deleted.deletedBy, a);
});

test("group refusals: FORBIDDEN for non-admins, NOT_FOUND, CONFLICT for a member already in, LIMIT_EXCEEDED past 1,024", async () => {
  const { b, c, ann, ben } = await trio();
  const groupId = (await ok(ann, "group:create", { name: "Strict", memberIds: [b] })).group.id;
  await refusedWith(ben, "group:update", { groupId, name: "mine now" }, "FORBIDDEN");
  await refusedWith(ben, "group:member:add", { groupId, userId: c }, "FORBIDDEN");
  await refusedWith(ann, "group:get", { groupId: "g_nosuchgroup" }, "NOT_FOUND");
  await refusedWith(ann, "group:member:add", { groupId, userId: b }, "CONFLICT");
  const crowd = Array.from({ length: 1024 }, (_, i) => `${b}-m${i}`);
  await refusedWith(ann, "group:create", { name: "Too big", memberIds: crowd }, "LIMIT_EXCEEDED");
  const empty = await refusedWith(ann, "group:create", { name: "", memberIds: [] }, "VALIDATION_ERROR");
  assert.match(empty.error, /name/);
});
