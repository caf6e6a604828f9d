// A minimal DOM for the widget's DOM layer under Node: elements, a shadow root, focus,
// events and sessionStorage. It implements only what vizochok-widget.js uses.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

const SCRIPT = path.join(__dirname, "..", "..", "conversations", "widget", "vizochok-widget.js");

class Node {
  constructor(ownerDocument) {
    this.ownerDocument = ownerDocument;
    this.parentNode = null;
    this.childNodes = [];
  }

  appendChild(child) {
    if (child.parentNode) {
      child.parentNode.removeChild(child);
    }
    child.parentNode = this;
    this.childNodes.push(child);
    return child;
  }

  removeChild(child) {
    dropFocusWithin(child);
    this.childNodes = this.childNodes.filter((node) => node !== child);
    child.parentNode = null;
    return child;
  }

  remove() {
    if (this.parentNode) {
      this.parentNode.removeChild(this);
    }
  }

  contains(other) {
    for (let node = other; node; node = node.parentNode) {
      if (node === this) {
        return true;
      }
    }
    return false;
  }

  get textContent() {
    return this.childNodes.map((node) => node.textContent).join("");
  }

  set textContent(value) {
    this.childNodes.forEach((node) => {
      dropFocusWithin(node);
      node.parentNode = null;
    });
    this.childNodes = [];
    if (value !== "") {
      this.appendChild(new Text(this.ownerDocument, value));
    }
  }
}

/** Removing the focused element, or an ancestor of it, moves the focus to the body, as browsers do. */
function dropFocusWithin(removed) {
  let root = removed;
  while (root.parentNode) {
    root = root.parentNode;
  }
  if (root instanceof ShadowRoot && root.activeElement && removed.contains(root.activeElement)) {
    root.activeElement = null;
    removed.ownerDocument.activeElement = removed.ownerDocument.body;
  }
}

class Text extends Node {
  constructor(ownerDocument, data) {
    super(ownerDocument);
    this.data = String(data);
  }

  get textContent() {
    return this.data;
  }
}

class Element extends Node {
  constructor(ownerDocument, tagName) {
    super(ownerDocument);
    this.tagName = tagName.toUpperCase();
    this.attributes = new Map();
    this.listeners = new Map();
    this.className = "";
    this.hidden = false;
    this.isDisabled = false;
    this.dir = "";
    this.lang = "";
    this.title = "";
    this.value = "";
    this.scrollTop = 0;
    this.scrollLeft = 0;
    this.scrollHeight = 0;
    this.clientHeight = 0;
    this.shadowRoot = null;
    this.style = { properties: {}, setProperty: (name, value) => (this.style.properties[name] = value) };
  }

  get disabled() {
    return this.isDisabled;
  }

  /** Disabling the focused element moves the focus to the body, as browsers do. */
  set disabled(value) {
    this.isDisabled = Boolean(value);
    const root = this.root();
    if (this.isDisabled && root instanceof ShadowRoot && root.activeElement === this) {
      root.activeElement = null;
      this.ownerDocument.activeElement = this.ownerDocument.body;
    }
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }

  addEventListener(type, listener) {
    if (!this.listeners.has(type)) {
      this.listeners.set(type, []);
    }
    this.listeners.get(type).push(listener);
  }

  /** Dispatch an event to this element and its ancestors, as a bubbling event does. */
  dispatch(type, fields = {}) {
    const event = {
      type,
      target: this,
      defaultPrevented: false,
      propagationStopped: false,
      preventDefault() {
        this.defaultPrevented = true;
      },
      stopPropagation() {
        this.propagationStopped = true;
      },
      ...fields,
    };
    for (let node = this; node && !event.propagationStopped; node = node.parentNode) {
      (node.listeners ? node.listeners.get(type) || [] : []).forEach((listener) => listener(event));
    }
    return event;
  }

  click() {
    if (!this.disabled) {
      this.dispatch("click");
    }
  }

  focus() {
    if (this.disabled) {
      return;
    }
    const root = this.root();
    if (root instanceof ShadowRoot) {
      root.activeElement = this;
      this.ownerDocument.activeElement = root.host;
    } else {
      this.ownerDocument.activeElement = this;
    }
  }

  root() {
    let node = this;
    while (node.parentNode) {
      node = node.parentNode;
    }
    return node;
  }

  attachShadow() {
    this.shadowRoot = new ShadowRoot(this.ownerDocument, this);
    return this.shadowRoot;
  }

  /** Return the descendants, in document order, that `test` accepts. */
  findAll(test) {
    const found = [];
    const visit = (node) => {
      node.childNodes.forEach((child) => {
        if (child instanceof Element) {
          if (test(child)) {
            found.push(child);
          }
          visit(child);
        }
      });
    };
    visit(this);
    return found;
  }

  /** Return the descendants whose class list has `name`. */
  byClass(name) {
    return this.findAll((node) => node.className.split(" ").includes(name));
  }

  byTag(tagName) {
    return this.findAll((node) => node.tagName === tagName.toUpperCase());
  }
}

class ShadowRoot extends Element {
  constructor(ownerDocument, host) {
    super(ownerDocument, "#shadow-root");
    this.host = host;
    this.activeElement = null;
  }
}

class Storage {
  constructor() {
    this.items = new Map();
  }

  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }

  setItem(key, value) {
    this.items.set(key, String(value));
  }

  removeItem(key) {
    this.items.delete(key);
  }
}

/**
 * Return {window, document, VIZOCHOKWidget} with the widget script run in a fresh context
 * whose fetch is `fetch`. The context has no `module`, so the script defines window.VIZOCHOKWidget.
 */
function loadWidget(fetch) {
  const document = {
    currentScript: null,
    activeElement: null,
    createElement: (tagName) => new Element(document, tagName),
    createElementNS: (namespace, tagName) =>
      Object.assign(new Element(document, tagName), { namespaceURI: namespace }),
    createTextNode: (data) => new Text(document, data),
  };
  document.body = new Element(document, "body");
  const window = {
    location: { origin: "http://127.0.0.1:8000" },
    sessionStorage: new Storage(),
    listeners: new Map(),
    // Animation frame callbacks by id, run only by runFrames(), so a test controls the frames.
    frames: new Map(),
    nextFrame: 1,
    addEventListener(type, listener) {
      if (!this.listeners.has(type)) {
        this.listeners.set(type, []);
      }
      this.listeners.get(type).push(listener);
    },
    removeEventListener(type, listener) {
      const remaining = (this.listeners.get(type) || []).filter((item) => item !== listener);
      this.listeners.set(type, remaining);
    },
    /** Call the listeners of `type` with an event, as a resize of the window does. */
    dispatch(type) {
      (this.listeners.get(type) || []).forEach((listener) => listener({ type, target: this }));
    },
    requestAnimationFrame(callback) {
      const id = this.nextFrame++;
      this.frames.set(id, callback);
      return id;
    },
    cancelAnimationFrame(id) {
      this.frames.delete(id);
    },
    /** Run the frame callbacks requested so far, as the browser's next frame does. */
    runFrames() {
      const due = [...this.frames.values()];
      this.frames.clear();
      due.forEach((callback) => callback(0));
    },
  };
  const context = vm.createContext({
    window,
    document,
    console,
    fetch,
    setTimeout,
    clearTimeout,
    TextDecoder,
    AbortController,
    URL,
    Promise,
  });
  vm.runInContext(fs.readFileSync(SCRIPT, "utf8"), context, { filename: SCRIPT });
  return { window, document, VIZOCHOKWidget: window.VIZOCHOKWidget };
}

module.exports = { loadWidget };
