// Audio/video calls: the browser's WebRTC, signaling over the socket, the ICE servers
// the server hands out (in the call:offer ack and in call:incoming).
import type { CallIncoming, ChatSocket, IceCandidate, IceServer } from "./api";
import { request } from "./api";

export type CallPhase = "calling" | "ringing" | "connecting" | "connected" | "ended";

export class Call {
  pc: RTCPeerConnection;
  callId: string | null = null;
  phase: CallPhase;
  local: MediaStream | null = null;
  remote = new MediaStream();
  private pending: IceCandidate[] = [];
  private early: RTCIceCandidateInit[] = [];

  /** The other party's display name, where known. */
  peerName: string;

  constructor(
    private socket: ChatSocket,
    readonly peerId: string,
    readonly kind: "audio" | "video",
    readonly outgoing: boolean,
    iceServers: IceServer[],
    private onChange: () => void,
  ) {
    this.phase = outgoing ? "calling" : "ringing";
    this.peerName = peerId;
    this.pc = new RTCPeerConnection({ iceServers: iceServers as RTCIceServer[] });
    this.pc.ontrack = (e) => {
      for (const track of e.streams[0]?.getTracks() ?? [e.track]) if (!this.remote.getTracks().includes(track)) this.remote.addTrack(track);
      this.onChange();
    };
    this.pc.onicecandidate = (e) => {
      if (!e.candidate) return;
      const c = e.candidate.toJSON();
      const candidate: IceCandidate = { candidate: c.candidate ?? "" };
      if (c.sdpMid != null) candidate.sdpMid = c.sdpMid;
      if (c.sdpMLineIndex != null) candidate.sdpMLineIndex = c.sdpMLineIndex;
      if (c.usernameFragment != null) candidate.usernameFragment = c.usernameFragment;
      if (this.callId) this.socket.emit("call:ice-candidate", { callId: this.callId, candidate });
      else this.pending.push(candidate);
    };
    this.pc.onconnectionstatechange = () => {
      const s = this.pc.connectionState;
      if (s === "connected") this.phase = "connected";
      else if (s === "failed" || s === "closed") this.phase = "ended";
      this.onChange();
    };
  }

  private async media(): Promise<void> {
    this.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: this.kind === "video" });
    for (const track of this.local.getTracks()) this.pc.addTrack(track, this.local);
  }

  private flush(): void {
    if (!this.callId) return;
    for (const candidate of this.pending.splice(0)) this.socket.emit("call:ice-candidate", { callId: this.callId, candidate });
  }

  static async start(socket: ChatSocket, peerId: string, kind: "audio" | "video", onChange: () => void): Promise<Call> {
    const call = new Call(socket, peerId, kind, true, [], onChange);
    await call.media();
    const offer = await call.pc.createOffer();
    await call.pc.setLocalDescription(offer);
    const ack = await request(socket, "call:offer", { targetUserId: peerId, callType: kind, offer: { type: "offer", sdp: offer.sdp ?? "" } });
    call.callId = ack.callId ?? null;
    // The ICE servers arrive with the ack, after the offer was made: use them from now on.
    if (ack.iceServers?.length) call.pc.setConfiguration({ iceServers: ack.iceServers as RTCIceServer[] });
    call.flush();
    return call;
  }

  static incoming(socket: ChatSocket, e: CallIncoming, onChange: () => void): Call {
    const call = new Call(socket, e.callerId, e.callType, false, e.iceServers, onChange);
    call.callId = e.callId;
    call.peerName = e.callerName;
    call.offer = String(e.offer.sdp ?? "");
    return call;
  }

  offer = "";

  async accept(): Promise<void> {
    this.phase = "connecting";
    await this.media();
    await this.pc.setRemoteDescription({ type: "offer", sdp: this.offer });
    for (const c of this.early.splice(0)) await this.pc.addIceCandidate(c);
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    await request(this.socket, "call:answer", { callId: this.callId ?? "", answer: { type: "answer", sdp: answer.sdp ?? "" } });
    this.flush();
    this.onChange();
  }

  async accepted(sdp: string): Promise<void> {
    this.phase = "connecting";
    await this.pc.setRemoteDescription({ type: "answer", sdp });
    for (const c of this.early.splice(0)) await this.pc.addIceCandidate(c);
    this.onChange();
  }

  async candidate(c: IceCandidate): Promise<void> {
    const init: RTCIceCandidateInit = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex, usernameFragment: c.usernameFragment };
    if (this.pc.remoteDescription) await this.pc.addIceCandidate(init);
    else this.early.push(init);
  }

  async reject(): Promise<void> {
    if (this.callId) await request(this.socket, "call:reject", { callId: this.callId }).catch(() => undefined);
    this.close();
  }

  async hangUp(): Promise<void> {
    if (this.callId) await request(this.socket, "call:end", { callId: this.callId }).catch(() => undefined);
    this.close();
  }

  close(): void {
    this.phase = "ended";
    for (const t of this.local?.getTracks() ?? []) t.stop();
    this.pc.close();
    this.onChange();
  }
}
