/**
 * Types for noVNC's RFB client as the viewer imports it (../novnc/core/rfb.js beside static/,
 * served from node_modules/@novnc/novnc/core/rfb.js; tsconfig.web.json's rootDirs lay this
 * directory over src/web, so the import finds this file). noVNC ships
 * JavaScript only; this follows its docs/API.md for the version in package.json.
 */

export interface RfbCredentials {
  username?: string;
  password?: string;
  target?: string;
}

export interface RfbOptions {
  shared?: boolean;
  credentials?: RfbCredentials;
  repeaterID?: string;
  wsProtocols?: string[];
}

export interface RfbEventMap {
  bell: CustomEvent<Record<string, never>>;
  capabilities: CustomEvent<{ capabilities: RFB['capabilities'] }>;
  clipboard: CustomEvent<{ text: string }>;
  clippingviewport: CustomEvent<boolean>;
  connect: CustomEvent<Record<string, never>>;
  credentialsrequired: CustomEvent<{ types: (keyof RfbCredentials)[] }>;
  desktopname: CustomEvent<{ name: string }>;
  disconnect: CustomEvent<{ clean: boolean }>;
  securityfailure: CustomEvent<{ status: number; reason?: string }>;
  serververification: CustomEvent<{ type: 'RSA'; publickey: Uint8Array }>;
}

/** noVNC's own event target (core/util/eventtarget.js), not the DOM's: no listener options. */
export default class RFB {
  constructor(target: HTMLElement, urlOrChannel: string | WebSocket | RTCDataChannel, options?: RfbOptions);

  background: string;
  readonly capabilities: { power: boolean };
  readonly clippingViewport: boolean;
  clipViewport: boolean;
  compressionLevel: number;
  dragViewport: boolean;
  focusOnClick: boolean;
  qualityLevel: number;
  resizeSession: boolean;
  scaleViewport: boolean;
  viewOnly: boolean;

  addEventListener<K extends keyof RfbEventMap>(type: K, listener: (event: RfbEventMap[K]) => void): void;
  removeEventListener<K extends keyof RfbEventMap>(type: K, listener: (event: RfbEventMap[K]) => void): void;
  dispatchEvent(event: Event): boolean;

  approveServer(): void;
  blur(): void;
  clipboardPasteFrom(text: string): void;
  disconnect(): void;
  focus(options?: FocusOptions): void;
  getImageData(): ImageData;
  machineReboot(): void;
  machineReset(): void;
  machineShutdown(): void;
  sendCredentials(credentials: RfbCredentials): void;
  sendCtrlAltDel(): void;
  sendKey(keysym: number, code: string | null, down?: boolean): void;
  toBlob(callback: (blob: Blob | null) => void, type?: string, quality?: number): void;
  toDataURL(type?: string, encoderOptions?: number): string;
}
