/*
 * Vizochok shopper chat widget, served at /widget/v1/vizochok-widget.js.
 *
 * One dependency-free script for current browsers, without a build step. It defines
 * window.VIZOCHOKWidget. Under Node (when `module` exists) it exports its pure core and
 * the fetch-based ChatClient for tests instead. docs/widget.md describes the embedding
 * snippet, the configuration, the callbacks and the Content-Security-Policy it needs.
 *
 * The file has three layers: the pure core (configuration, SSE parsing, the reducer of
 * events into transcript and cart state, formatting, error texts, storage keys), the
 * ChatClient (the chat REST API over fetch, no DOM), and the DOM layer (VIZOCHOKWidget).
 * Every server string is inserted with textContent, never as HTML.
 */
(function () {
  "use strict";

  // Captured while the script runs: document.currentScript is null in later callbacks.
  var SCRIPT_ORIGIN = (function () {
    if (typeof document === "undefined" || !document.currentScript) {
      return null;
    }
    try {
      return new URL(document.currentScript.src).origin;
    } catch (error) {
      return null;
    }
  })();

  var LANGUAGES = ["uk", "en", "ru"];
  var POSITIONS = ["bottom-right", "bottom-left"];
  var CALLBACKS = [
    "onCartChanged",
    "onProductClick",
    "onSessionComplete",
    "onError",
    "onConnect",
    "onDisconnect",
  ];
  // Theme property -> CSS custom property set on the widget's host element.
  var THEME_PROPERTIES = {
    primaryColor: "--vz-primary-color",
    primaryTextColor: "--vz-primary-text-color",
    backgroundColor: "--vz-background-color",
    textColor: "--vz-text-color",
    fontFamily: "--vz-font-family",
    fontSize: "--vz-font-size",
    borderRadius: "--vz-border-radius",
    zIndex: "--vz-z-index",
  };
  // Theme properties whose CSS value is a length: a number is taken as pixels, because a
  // unitless length such as "16" is invalid CSS and drops the property.
  var THEME_LENGTHS = ["fontSize", "borderRadius"];
  // Limits of POST /api/v1/conversations (docs/chat-api.md), checked before any request.
  var STORE_ID_MAX_LENGTH = 100;
  var USER_ID_MAX_LENGTH = 200;
  var USER_TOKEN_MAX_LENGTH = 200;
  var STORAGE_PREFIX = "vizochok.conversation.v1:";
  // The message whose reply may be lost, as JSON {text, key}, under the same suffix.
  var PENDING_PREFIX = "vizochok.pending.v1:";
  var HISTORY_LIMIT = 50;
  // Milliseconds a message's reply may take, from the request to its last event, before the
  // widget gives up. The server's longest reply takes about 131 s (docs/streaming.md) and it
  // sends nothing while it waits, so a connection that silently stalls is only noticed here.
  var REPLY_TIMEOUT_MS = 150000;

  // ---------------------------------------------------------------------------------------
  // Pure core
  // ---------------------------------------------------------------------------------------

  function isHttpUrl(value) {
    if (typeof value !== "string" || value === "") {
      return false;
    }
    try {
      var protocol = new URL(value).protocol;
      return protocol === "http:" || protocol === "https:";
    } catch (error) {
      return false;
    }
  }

  function configError(property, message) {
    return new TypeError("VIZOCHOKWidget: invalid config." + property + ": " + message);
  }

  /**
   * Return the API base URL without trailing slashes, to which the API paths are appended.
   *
   * A query or fragment would end up in front of the appended path, and fetch() rejects a
   * URL with user info, so all three throw.
   */
  function normalizeApiBase(value) {
    if (!isHttpUrl(value)) {
      throw configError("apiBase", "expected an http or https URL");
    }
    var url = new URL(value);
    if (url.username !== "" || url.password !== "") {
      throw configError("apiBase", "must not contain user info");
    }
    if (url.search !== "" || url.hash !== "" || /[?#]/.test(value)) {
      throw configError("apiBase", "must not have a query or fragment");
    }
    return (url.origin + url.pathname).replace(/\/+$/, "");
  }

  function optionalString(config, property, maxLength) {
    var value = config[property];
    if (value === undefined || value === null) {
      return null;
    }
    if (typeof value !== "string" || value === "") {
      throw configError(property, "expected a non-empty string or null");
    }
    if (maxLength !== undefined && value.length > maxLength) {
      throw configError(property, "expected at most " + maxLength + " characters");
    }
    return value;
  }

  function identifier(config, property, maxLength, required) {
    var value = optionalString(config, property, maxLength);
    if (value === null) {
      if (required) {
        throw configError(property, "missing; this property is required");
      }
      return null;
    }
    if (value.trim() !== value) {
      throw configError(property, "must not start or end with whitespace");
    }
    return value;
  }

  /**
   * Validate a widget configuration and fill in its defaults.
   *
   * `defaultApiBase` is the origin the script was loaded from, else the page's origin.
   * Throws a TypeError that names the invalid property.
   */
  function validateConfig(config, defaultApiBase) {
    if (config === null || typeof config !== "object") {
      throw new TypeError("VIZOCHOKWidget: config must be an object with apiKey and storeId");
    }
    var apiKey = identifier(config, "apiKey", undefined, true);
    if (apiKey.indexOf("pk_") !== 0) {
      throw configError("apiKey", "must be a public key starting with pk_ (never a secret sk_ key)");
    }
    var storeId = identifier(config, "storeId", STORE_ID_MAX_LENGTH, true);
    var userId = identifier(config, "userId", USER_ID_MAX_LENGTH, false);
    var userToken = identifier(config, "userToken", USER_TOKEN_MAX_LENGTH, false);
    if (userId !== null && userToken === null) {
      throw configError("userToken", "missing; a userId needs the user token your server issued");
    }
    if (userId === null && userToken !== null) {
      throw configError("userId", "missing; a userToken is only sent with the userId it signs");
    }

    var languageGiven = config.language !== undefined && config.language !== null;
    var language = languageGiven ? config.language : "uk";
    if (LANGUAGES.indexOf(language) === -1) {
      throw configError("language", "expected one of " + LANGUAGES.join(", "));
    }
    var position =
      config.position === undefined || config.position === null ? "bottom-right" : config.position;
    if (POSITIONS.indexOf(position) === -1) {
      throw configError("position", "expected one of " + POSITIONS.join(", "));
    }

    var apiBase = normalizeApiBase(optionalString(config, "apiBase") || defaultApiBase);

    var botAvatar = optionalString(config, "botAvatar");
    if (botAvatar !== null && !isHttpUrl(botAvatar)) {
      throw configError("botAvatar", "expected an http or https URL");
    }

    var theme = {};
    if (config.theme !== undefined && config.theme !== null) {
      if (typeof config.theme !== "object") {
        throw configError("theme", "expected an object");
      }
      Object.keys(config.theme).forEach(function (name) {
        var value = config.theme[name];
        if (!Object.prototype.hasOwnProperty.call(THEME_PROPERTIES, name)) {
          throw configError(
            "theme." + name,
            "unknown; expected one of " + Object.keys(THEME_PROPERTIES).join(", ")
          );
        }
        if (typeof value === "number" && !isFinite(value)) {
          throw configError("theme." + name, "expected a finite number");
        }
        if (typeof value !== "string" && typeof value !== "number") {
          throw configError("theme." + name, "expected a string or a number");
        }
        var suffix = typeof value === "number" && THEME_LENGTHS.indexOf(name) !== -1 ? "px" : "";
        theme[name] = String(value) + suffix;
      });
    }

    var callbacks = {};
    CALLBACKS.forEach(function (name) {
      var callback = config[name];
      if (callback === undefined || callback === null) {
        return;
      }
      if (typeof callback !== "function") {
        throw configError(name, "expected a function");
      }
      callbacks[name] = callback;
    });

    return {
      apiKey: apiKey,
      storeId: storeId,
      userId: userId,
      userToken: userToken,
      language: language,
      // Sent when a conversation starts, as the language of a first message that fits
      // several languages. Null without a configured language, so that the tenant's
      // default language applies then.
      conversationLanguage: languageGiven ? language : null,
      apiBase: apiBase,
      position: position,
      botName: optionalString(config, "botName") || TEXTS[language].botName,
      botAvatar: botAvatar,
      placeholder: optionalString(config, "placeholder"),
      welcomeMessage: optionalString(config, "welcomeMessage"),
      theme: theme,
      callbacks: callbacks,
    };
  }

  /**
   * Return the sessionStorage key of the conversation of one key, store and shopper, or with
   * `prefix`, of another value kept for them.
   */
  function storageKey(config, prefix) {
    return (
      (prefix || STORAGE_PREFIX) +
      JSON.stringify([config.apiBase, config.apiKey, config.storeId, config.userId || null])
    );
  }

  /**
   * Incremental parser of a Server-Sent Events stream (the WHATWG HTML event stream format).
   *
   * push() takes decoded text in chunks of any size and returns the messages completed by
   * it, each {event, data, id}. Lines end with CRLF, LF or CR; a CR at the end of a chunk
   * waits for the next chunk, in case an LF follows. Comment lines (":") are skipped and
   * several data lines are joined with "\n".
   */
  function SSEParser() {
    this.buffer = "";
    this.chunks = [];
    this.eventType = "";
    this.dataLines = [];
    this.lastEventId = "";
    this.dataSeen = false;
  }

  SSEParser.prototype.push = function (text) {
    var messages = [];
    // A long line that arrives in many chunks is collected in a list and joined once its
    // line end arrives, and the joined text is scanned from where the last scan stopped.
    // Appending to and rescanning one string would take quadratic time.
    if (!/[\r\n]/.test(text) && this.buffer.slice(-1) !== "\r") {
      this.chunks.push(text);
      return messages;
    }
    this.buffer += this.chunks.join("");
    this.chunks = [];
    var resume = this.buffer.length;
    if (resume > 0 && this.buffer[resume - 1] === "\r") {
      resume--;
    }
    this.buffer += text;
    var start = 0;
    for (var index = resume; index < this.buffer.length; index++) {
      var character = this.buffer[index];
      if (character !== "\n" && character !== "\r") {
        continue;
      }
      if (character === "\r" && index === this.buffer.length - 1) {
        break;
      }
      this._line(this.buffer.slice(start, index), messages);
      if (character === "\r" && this.buffer[index + 1] === "\n") {
        index++;
      }
      start = index + 1;
    }
    this.buffer = this.buffer.slice(start);
    return messages;
  };

  /**
   * Finish the stream. A line ended by a CR that was held back is processed. A message
   * without its closing blank line is dropped, as the format requires at the end of a stream.
   */
  SSEParser.prototype.end = function () {
    var messages = [];
    if (this.chunks.length === 0 && this.buffer.slice(-1) === "\r") {
      this._line(this.buffer.slice(0, -1), messages);
    }
    this.buffer = "";
    this.chunks = [];
    this.eventType = "";
    this.dataLines = [];
    this.dataSeen = false;
    return messages;
  };

  SSEParser.prototype._line = function (line, messages) {
    if (line === "") {
      if (this.dataSeen) {
        messages.push({
          event: this.eventType || "message",
          data: this.dataLines.join("\n"),
          id: this.lastEventId,
        });
      }
      this.eventType = "";
      this.dataLines = [];
      this.dataSeen = false;
      return;
    }
    if (line[0] === ":") {
      return;
    }
    var colon = line.indexOf(":");
    var field = colon === -1 ? line : line.slice(0, colon);
    var value = colon === -1 ? "" : line.slice(colon + 1);
    if (value[0] === " ") {
      value = value.slice(1);
    }
    if (field === "event") {
      this.eventType = value;
    } else if (field === "data") {
      this.dataLines.push(value);
      this.dataSeen = true;
    } else if (field === "id" && value.indexOf("\u0000") === -1) {
      this.lastEventId = value;
    }
  };

  /** Return the objects of `value` when it is an array, else an empty array. */
  function objectsOf(value) {
    if (!Array.isArray(value)) {
      return [];
    }
    return value.filter(function (item) {
      return item !== null && typeof item === "object" && !Array.isArray(item);
    });
  }

  function initialState() {
    return {
      entries: [],
      cart: { items: [], total: 0 },
      assistant: null,
      busy: false,
    };
  }

  function copyEntries(state) {
    return state.entries.slice();
  }

  function lastAssistantEntry(entries) {
    var last = entries[entries.length - 1];
    if (last && last.role === "assistant" && !last.complete) {
      return last;
    }
    return null;
  }

  /** Return a state with the shopper's message appended and a reply in progress. */
  function addShopperMessage(state, text) {
    var entries = copyEntries(state);
    entries.push({ role: "user", text: text });
    return Object.assign({}, state, { entries: entries, busy: true });
  }

  /**
   * Return the state after one event of a reply (docs/chat-api.md "Events").
   *
   * An assistant entry collects the reply's parts in order: text blocks, product cards,
   * cart changes and errors. `status` is the progress code shown until text arrives.
   */
  function reduceEvent(state, event) {
    var entries = copyEntries(state);
    var open = lastAssistantEntry(entries);
    var entry = open
      ? Object.assign({}, open, { parts: open.parts.slice() })
      : { role: "assistant", parts: [], status: null, complete: false, textOpen: false };
    if (open) {
      entries[entries.length - 1] = entry;
    } else {
      entries.push(entry);
    }
    var next = Object.assign({}, state, { entries: entries });
    var lastPart = entry.parts[entry.parts.length - 1];

    switch (event.type) {
      case "status":
        entry.status = event.code;
        break;
      case "text_delta":
        var delta = typeof event.delta === "string" ? event.delta : "";
        entry.status = null;
        if (entry.textOpen && lastPart && lastPart.kind === "text") {
          entry.parts[entry.parts.length - 1] = { kind: "text", text: lastPart.text + delta };
        } else {
          entry.parts.push({ kind: "text", text: delta });
        }
        entry.textOpen = true;
        break;
      case "text_end":
        entry.textOpen = false;
        break;
      case "product_cards":
        entry.status = null;
        entry.textOpen = false;
        entry.parts.push({ kind: "cards", items: objectsOf(event.items) });
        break;
      case "cart_changed":
        entry.status = null;
        entry.textOpen = false;
        entry.parts.push({ kind: "cart", event: event });
        next.cart = { items: objectsOf(event.items), total: event.total };
        break;
      case "error":
        entry.status = null;
        entry.textOpen = false;
        entry.parts.push({ kind: "error", error: event });
        break;
      case "response_complete":
        entry.status = null;
        entry.textOpen = false;
        entry.complete = true;
        next.busy = false;
        break;
      default:
        // "event" and types added later carry nothing to show yet.
        break;
    }
    return next;
  }

  /** Return the event without its `type`: the CartChangedEvent passed to onCartChanged. */
  function cartChangedEvent(event) {
    var result = {};
    Object.keys(event).forEach(function (name) {
      if (name !== "type") {
        result[name] = event[name];
      }
    });
    return result;
  }

  /** Return the `assistant` of the conversation's latest assistant message, or null. */
  function assistantOf(conversation) {
    var messages = objectsOf(conversation.messages);
    for (var index = messages.length - 1; index >= 0; index--) {
      var metadata = messages[index].metadata;
      if (messages[index].role === "assistant" && metadata && metadata.assistant) {
        return metadata.assistant;
      }
    }
    return null;
  }

  /** Return the cart of a conversation read back from the API. */
  function conversationCart(conversation) {
    return { items: objectsOf(conversation.cart.items), total: conversation.cart.total || 0 };
  }

  /** Build the state of a conversation read with GET /api/v1/conversations/{id}. */
  function restoreState(conversation) {
    var state = initialState();
    objectsOf(conversation.messages).forEach(function (message) {
      if (message.role === "user") {
        state = addShopperMessage(state, message.text);
        return;
      }
      var events = objectsOf(message.events);
      events.forEach(function (event) {
        state = reduceEvent(state, event);
      });
      if (events.length === 0 || events[events.length - 1].type !== "response_complete") {
        state = reduceEvent(state, { type: "response_complete" });
      }
    });
    if (conversation.cart) {
      state.cart = conversationCart(conversation);
    }
    // The detail names the assistant that replies next. Its replies name the ones that did.
    var named = conversation.assistant;
    state.assistant = typeof named === "string" ? named : assistantOf(conversation);
    state.busy = false;
    return state;
  }

  /** Format an amount with two decimals, halves rounded up, as the replies do; no currency. */
  function formatPrice(value, language) {
    if (typeof value !== "number" || !isFinite(value)) {
      return "";
    }
    // toPrecision drops the binary noise of value * 100 (1.005 * 100 is 100.49999…).
    var cents = Math.round(Number((Math.abs(value) * 100).toPrecision(12)));
    var whole = String(Math.floor(cents / 100));
    var fraction = String(cents % 100);
    if (fraction.length < 2) {
      fraction = "0" + fraction;
    }
    var groupSeparator = language === "en" ? "," : "\u00a0";
    var decimalSeparator = language === "en" ? "." : ",";
    whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, groupSeparator);
    return (value < 0 && cents !== 0 ? "-" : "") + whole + decimalSeparator + fraction;
  }

  var UNIT_NAMES = {
    uk: { kg: "кг", l: "л", g: "г", ml: "мл", pcs: "шт" },
    en: { kg: "kg", l: "l", g: "g", ml: "ml", pcs: "pcs" },
    ru: { kg: "кг", l: "л", g: "г", ml: "мл", pcs: "шт" },
  };

  /** Format a card's price with its unit for goods sold by weight or volume: "14,95 / кг". */
  function formatUnitPrice(value, unit, language) {
    var price = formatPrice(value, language);
    if (!unit || unit === "pcs" || price === "") {
      return price;
    }
    return price + " / " + (UNIT_NAMES[language][unit] || unit);
  }

  var TEXTS = {
    uk: {
      botName: "Помічник",
      open: "Відкрити чат",
      close: "Закрити чат",
      newConversation: "Нова розмова",
      send: "Надіслати",
      placeholder: "Напишіть, що шукаєте…",
      offlineBadge: "Офлайн-помічник, без ШІ",
      offlineBadgeTitle:
        "Відповідає офлайн-помічник: він розуміє короткі команди, а не вільну розмову.",
      add: "У кошик",
      cart: "Кошик",
      total: "Разом",
      emptyCart: "Кошик порожній",
      you: "Ви",
      transcript: "Розмова",
      oldPrice: "Стара ціна",
      newPrice: "Ціна зі знижкою",
      status: { searching: "Шукаю товари…", updating_cart: "Оновлюю кошик…" },
      statusDefault: "Працюю…",
      addMessage: "Додай «{name}»",
    },
    en: {
      botName: "Assistant",
      open: "Open chat",
      close: "Close chat",
      newConversation: "New conversation",
      send: "Send",
      placeholder: "What are you looking for?",
      offlineBadge: "Offline assistant, no AI",
      offlineBadgeTitle:
        "The offline assistant answers: it understands short commands, not free conversation.",
      add: "Add to cart",
      cart: "Cart",
      total: "Total",
      emptyCart: "The cart is empty",
      you: "You",
      transcript: "Conversation",
      oldPrice: "Old price",
      newPrice: "Sale price",
      status: { searching: "Searching for products…", updating_cart: "Updating the cart…" },
      statusDefault: "Working…",
      addMessage: "Add «{name}»",
    },
    ru: {
      botName: "Ассистент",
      open: "Открыть чат",
      close: "Закрыть чат",
      newConversation: "Новый разговор",
      send: "Отправить",
      placeholder: "Напишите, что ищете…",
      offlineBadge: "Офлайн-ассистент, без ИИ",
      offlineBadgeTitle:
        "Отвечает офлайн-ассистент: он понимает короткие команды, а не свободный разговор.",
      add: "В корзину",
      cart: "Корзина",
      total: "Итого",
      emptyCart: "Корзина пуста",
      you: "Вы",
      transcript: "Разговор",
      oldPrice: "Старая цена",
      newPrice: "Цена со скидкой",
      status: { searching: "Ищу товары…", updating_cart: "Обновляю корзину…" },
      statusDefault: "Работаю…",
      addMessage: "Добавь «{name}»",
    },
  };

  // Shopper-facing texts of every error code in docs/chat-api.md and docs/streaming.md, plus
  // the widget's own network_error and stream_interrupted, and the text of the 403 with
  // "reason": "origin_not_allowed". "{n}" is filled from the error.
  var ERROR_TEXTS = {
    uk: {
      invalid_json: "Не вдалося надіслати повідомлення. Спробуйте написати його інакше.",
      not_authenticated: "Чат не налаштовано на цьому сайті. Спробуйте пізніше.",
      authentication_failed: "Чат зараз недоступний на цьому сайті. Спробуйте пізніше.",
      permission_denied: "Не вдалося підтвердити ваш обліковий запис. Оновіть сторінку.",
      not_found: "Попередню розмову не знайдено. Наступне повідомлення почне нову.",
      method_not_allowed: "Чат не зміг виконати запит. Оновіть сторінку.",
      not_acceptable: "Чат не зміг виконати запит. Оновіть сторінку.",
      length_required: "Чат не зміг надіслати повідомлення. Оновіть сторінку.",
      agent_busy: "Помічник ще відповідає на попереднє повідомлення. Зачекайте трохи.",
      idempotency_key_reused: "Не вдалося надіслати повідомлення. Надішліть його ще раз.",
      message_too_large: "Повідомлення задовге. Напишіть коротше.",
      payload_too_large: "Запит завеликий. Оновіть сторінку.",
      unsupported_media_type: "Чат не зміг надіслати повідомлення. Оновіть сторінку.",
      rate_limit_exceeded: "Забагато повідомлень поспіль. Спробуйте через {retry_after} с.",
      user_message_limit: "Ви досягли денного ліміту повідомлень. Поверніться завтра.",
      user_conversation_limit: "Ви досягли денного ліміту розмов. Поверніться завтра.",
      internal_error: "Щось пішло не так. Спробуйте ще раз.",
      secret_undecryptable: "Чат зараз недоступний на цьому сайті. Спробуйте пізніше.",
      database_unavailable: "Чат тимчасово недоступний. Спробуйте за хвилину.",
      no_catalog_data: "Каталог магазину поки порожній, тож шукати поки нічого.",
      tenant_daily_token_limit: "Помічник на сьогодні вичерпав ліміт. Спробуйте завтра.",
      tenant_monthly_token_limit: "Помічник вичерпав ліміт цього місяця. Спробуйте пізніше.",
      session_token_limit: "Ця розмова досягла ліміту. Почніть нову розмову.",
      max_rounds_exceeded: "Помічник не впорався із запитом. Спробуйте сформулювати простіше.",
      origin_not_allowed: "Чат не ввімкнено для цього сайту. Спробуйте пізніше.",
      network_error: "Немає зв'язку з чатом. Перевірте інтернет і спробуйте ще раз.",
      stream_interrupted: "Відповідь обірвалася. Спробуйте ще раз.",
      unknown: "Щось пішло не так. Спробуйте ще раз.",
    },
    en: {
      invalid_json: "The message could not be sent. Try writing it differently.",
      not_authenticated: "The chat is not set up on this site. Try again later.",
      authentication_failed: "The chat is unavailable on this site. Try again later.",
      permission_denied: "Your account could not be verified. Reload the page.",
      not_found: "The previous conversation was not found. Your next message starts a new one.",
      method_not_allowed: "The chat could not process the request. Reload the page.",
      not_acceptable: "The chat could not process the request. Reload the page.",
      length_required: "The chat could not send the message. Reload the page.",
      agent_busy: "The assistant is still answering your previous message. Please wait.",
      idempotency_key_reused: "The message could not be sent. Send it again.",
      message_too_large: "The message is too long. Write a shorter one.",
      payload_too_large: "The request is too large. Reload the page.",
      unsupported_media_type: "The chat could not send the message. Reload the page.",
      rate_limit_exceeded: "Too many messages in a row. Try again in {retry_after} s.",
      user_message_limit: "You reached today's message limit. Come back tomorrow.",
      user_conversation_limit: "You reached today's conversation limit. Come back tomorrow.",
      internal_error: "Something went wrong. Please try again.",
      secret_undecryptable: "The chat is unavailable on this site. Try again later.",
      database_unavailable: "The chat is briefly unavailable. Try again in a minute.",
      no_catalog_data: "The store's catalog is empty, so there is nothing to search yet.",
      tenant_daily_token_limit: "The assistant reached its limit for today. Try tomorrow.",
      tenant_monthly_token_limit: "The assistant reached its limit for this month. Try later.",
      session_token_limit: "This conversation reached its limit. Start a new conversation.",
      max_rounds_exceeded: "The assistant could not handle this request. Try asking more simply.",
      origin_not_allowed: "The chat is not enabled for this site. Try again later.",
      network_error: "No connection to the chat. Check your internet and try again.",
      stream_interrupted: "The reply was cut off. Please try again.",
      unknown: "Something went wrong. Please try again.",
    },
    ru: {
      invalid_json: "Не удалось отправить сообщение. Попробуйте написать его иначе.",
      not_authenticated: "Чат не настроен на этом сайте. Попробуйте позже.",
      authentication_failed: "Чат сейчас недоступен на этом сайте. Попробуйте позже.",
      permission_denied: "Не удалось подтвердить вашу учётную запись. Обновите страницу.",
      not_found: "Предыдущий разговор не найден. Следующее сообщение начнёт новый.",
      method_not_allowed: "Чат не смог выполнить запрос. Обновите страницу.",
      not_acceptable: "Чат не смог выполнить запрос. Обновите страницу.",
      length_required: "Чат не смог отправить сообщение. Обновите страницу.",
      agent_busy: "Ассистент ещё отвечает на предыдущее сообщение. Подождите немного.",
      idempotency_key_reused: "Не удалось отправить сообщение. Отправьте его ещё раз.",
      message_too_large: "Сообщение слишком длинное. Напишите короче.",
      payload_too_large: "Запрос слишком большой. Обновите страницу.",
      unsupported_media_type: "Чат не смог отправить сообщение. Обновите страницу.",
      rate_limit_exceeded: "Слишком много сообщений подряд. Попробуйте через {retry_after} с.",
      user_message_limit: "Вы достигли дневного лимита сообщений. Возвращайтесь завтра.",
      user_conversation_limit: "Вы достигли дневного лимита разговоров. Возвращайтесь завтра.",
      internal_error: "Что-то пошло не так. Попробуйте ещё раз.",
      secret_undecryptable: "Чат сейчас недоступен на этом сайте. Попробуйте позже.",
      database_unavailable: "Чат временно недоступен. Попробуйте через минуту.",
      no_catalog_data: "Каталог магазина пока пуст, поэтому искать пока нечего.",
      tenant_daily_token_limit: "Ассистент исчерпал лимит на сегодня. Попробуйте завтра.",
      tenant_monthly_token_limit: "Ассистент исчерпал лимит этого месяца. Попробуйте позже.",
      session_token_limit: "Этот разговор достиг лимита. Начните новый разговор.",
      max_rounds_exceeded: "Ассистент не справился с запросом. Попробуйте сформулировать проще.",
      origin_not_allowed: "Чат не включён для этого сайта. Попробуйте позже.",
      network_error: "Нет связи с чатом. Проверьте интернет и попробуйте ещё раз.",
      stream_interrupted: "Ответ оборвался. Попробуйте ещё раз.",
      unknown: "Что-то пошло не так. Попробуйте ещё раз.",
    },
  };

  /** Return the shopper-facing text of an error {code, ...} in the language, or the
   *  generic text for a code the widget does not know. */
  function localizeError(error, language) {
    var texts = ERROR_TEXTS[language] || ERROR_TEXTS.uk;
    var code = error && error.code;
    if (code === "permission_denied" && error.reason === "origin_not_allowed") {
      // The site, not the shopper's account, is not allowed: "reload" would not help.
      code = "origin_not_allowed";
    }
    var template = Object.prototype.hasOwnProperty.call(texts, code) ? texts[code] : texts.unknown;
    return template.replace(/\{(\w+)\}/g, function (placeholder, name) {
      var value = error[name];
      return value === undefined || value === null ? "?" : String(value);
    });
  }

  // Quote pairs that the offline assistant reads a product name between, in order of
  // preference. It reads from an opening quote to the first closing one, so a name that
  // contains a quote of a pair would be cut at that quote.
  var NAME_QUOTES = [
    ["«", "»"],
    ["\u201c", "\u201d"],
    ['"', '"'],
  ];

  /** Return the message the add button sends, naming the product in the UI language. */
  function addMessageText(product, language) {
    var name = String(product.name);
    var quotes = NAME_QUOTES.filter(function (pair) {
      return name.indexOf(pair[0]) === -1 && name.indexOf(pair[1]) === -1;
    })[0];
    // NOTE: a name that contains a quote of every pair is sent in «» and is cut at its first
    // quote, so the assistant may pick another product or ask which one.
    quotes = quotes || NAME_QUOTES[0];
    var template = (TEXTS[language] || TEXTS.uk).addMessage;
    return template.replace("«{name}»", function () {
      return quotes[0] + name + quotes[1];
    });
  }

  /** Return the cart summary line, "Cart (2): Total 61.80", of a cart {items, total}. */
  function cartSummary(cart, language) {
    var texts = TEXTS[language] || TEXTS.uk;
    var count = objectsOf(cart.items).length;
    return texts.cart + " (" + count + "): " + texts.total + " " + formatPrice(cart.total, language);
  }

  /**
   * Return the text a screen reader announces for a finished reply: its text blocks and
   * error texts in order, and the cart summary after the reply's last cart change. The
   * product cards are left out, because the shopper reaches them with Tab.
   */
  function replyAnnouncement(entry, language) {
    var lines = [];
    var cart = null;
    entry.parts.forEach(function (part) {
      if (part.kind === "text" && part.text.trim() !== "") {
        lines.push(part.text);
      } else if (part.kind === "error") {
        lines.push(localizeError(part.error, language));
      } else if (part.kind === "cart") {
        cart = part.event;
      }
    });
    if (cart) {
      // The reply's text may not mention the cart, as an LLM's "Done!" does not.
      lines.push(cartSummary(cart, language));
    }
    return lines.join("\n");
  }

  // ---------------------------------------------------------------------------------------
  // ChatClient: the chat REST API over fetch, without the DOM
  // ---------------------------------------------------------------------------------------

  /** Error of a request: an error response {"detail", "code", ...} or a network failure. */
  function ApiError(status, body) {
    var fields = body && typeof body === "object" ? body : {};
    this.name = "ApiError";
    this.status = status;
    this.code = typeof fields.code === "string" ? fields.code : "unknown";
    this.detail = typeof fields.detail === "string" ? fields.detail : "";
    this.message = this.code + (this.detail ? ": " + this.detail : "");
    this.body = fields;
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  /** Return the {code, status, detail, ...extra} object passed to onError. */
  function errorInfo(error) {
    if (error instanceof ApiError) {
      return Object.assign({}, error.body, {
        code: error.code,
        status: error.status,
        detail: error.detail,
      });
    }
    return Object.assign({}, error);
  }

  function ChatClient(config, options) {
    var settings = options || {};
    this.config = config;
    this.fetch = settings.fetch || globalThis.fetch.bind(globalThis);
    this.replyTimeoutMs = settings.replyTimeoutMs || REPLY_TIMEOUT_MS;
  }

  ChatClient.prototype._headers = function (accept, extraHeaders) {
    return Object.assign(
      {
        Authorization: "Bearer " + this.config.apiKey,
        "Content-Type": "application/json",
        Accept: accept,
      },
      extraHeaders
    );
  };

  ChatClient.prototype._request = function (method, path, body, accept, signal, extraHeaders) {
    var init = {
      method: method,
      headers: this._headers(accept || "application/json", extraHeaders),
    };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
    }
    if (signal) {
      init.signal = signal;
    }
    return this.fetch(this.config.apiBase + path, init).then(
      function (response) {
        return response;
      },
      function () {
        throw new ApiError(0, { code: "network_error" });
      }
    );
  };

  /** Return the body parsed as JSON, or null when it is not JSON or cannot be read. */
  function readJson(response) {
    return response.text().then(
      function (text) {
        try {
          return JSON.parse(text);
        } catch (error) {
          return null;
        }
      },
      function () {
        return null;
      }
    );
  }

  function checked(response) {
    if (response.ok) {
      return readJson(response);
    }
    return readJson(response).then(function (body) {
      throw new ApiError(response.status, body);
    });
  }

  /** POST /api/v1/conversations; resolves to the 201 body. */
  ChatClient.prototype.startConversation = function () {
    var body = { store_id: this.config.storeId };
    if (this.config.userId !== null) {
      body.user_id = this.config.userId;
      body.user_token = this.config.userToken;
    }
    if (this.config.conversationLanguage !== null) {
      body.language = this.config.conversationLanguage;
    }
    return this._request("POST", "/api/v1/conversations", body).then(checked);
  };

  /** GET /api/v1/conversations/{id} with the latest messages. */
  ChatClient.prototype.getConversation = function (conversationId, limit) {
    var path =
      "/api/v1/conversations/" +
      encodeURIComponent(conversationId) +
      "?limit=" +
      (limit || HISTORY_LIMIT);
    return this._request("GET", path).then(checked);
  };

  /**
   * Send a message and call onEvent(event) for each event of the reply, in order.
   *
   * With `stream` the request accepts Server-Sent Events, and events are passed on as they
   * arrive. A response that is not a stream is read as the JSON events list. A stream that
   * ends without `response_complete` gets a `stream_interrupted` error and a
   * `response_complete` of the widget's own, and so does a reply that is still unfinished
   * after `replyTimeoutMs`. Rejects with an ApiError for an error response, and with a
   * `network_error` when no response arrived in time. `idempotencyKey` is sent as the
   * Idempotency-Key header, so that sending the message again with the same key gets the
   * stored reply when the server has already processed it.
   */
  ChatClient.prototype.sendMessage = function (conversationId, text, options) {
    var settings = options || {};
    var onEvent = settings.onEvent || function () {};
    var stream = settings.stream !== false;
    var path = "/api/v1/conversations/" + encodeURIComponent(conversationId) + "/messages";
    var accept = stream ? "text/event-stream" : "application/json";
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var eventStream = { reader: null };
    var timer = setTimeout(function () {
      if (controller) {
        controller.abort();
      }
      if (eventStream.reader) {
        // Ends a pending read also when the fetch implementation ignores the signal.
        eventStream.reader.cancel().catch(function () {});
      }
    }, this.replyTimeoutMs);
    var headers = settings.idempotencyKey ? { "Idempotency-Key": settings.idempotencyKey } : {};
    var request = this._request(
      "POST",
      path,
      { text: text },
      accept,
      controller && controller.signal,
      headers
    );
    var outcome = request.then(function (response) {
      if (!response.ok) {
        return checked(response);
      }
      var contentType = response.headers.get("Content-Type") || "";
      if (contentType.indexOf("text/event-stream") === 0 && response.body) {
        eventStream.reader = response.body.getReader();
        return readEventStream(eventStream.reader, onEvent);
      }
      return readJson(response).then(function (body) {
        var reply = new ReplyEvents(onEvent);
        objectsOf(body && body.events).forEach(function (event) {
          reply.deliver(event);
        });
        var events = reply.finish();
        var messageId = body && typeof body.message_id === "string" ? body.message_id : null;
        return { messageId: messageId, events: events };
      });
    });
    return outcome.then(
      function (result) {
        clearTimeout(timer);
        return result;
      },
      function (error) {
        clearTimeout(timer);
        throw error;
      }
    );
  };

  /**
   * The events of one reply, passed on to onEvent up to the first `response_complete`.
   *
   * finish() ends a reply that has no `response_complete`, whether streamed or read as
   * JSON, with a `stream_interrupted` error and a `response_complete` of the widget's own,
   * so that the input is enabled again. Events that are not objects with a string `type`
   * are dropped.
   */
  function ReplyEvents(onEvent) {
    this.onEvent = onEvent;
    this.events = [];
    this.completed = false;
  }

  ReplyEvents.prototype.deliver = function (event) {
    if (this.completed || !event || typeof event !== "object" || typeof event.type !== "string") {
      return;
    }
    this.events.push(event);
    if (event.type === "response_complete") {
      this.completed = true;
    }
    this.onEvent(event);
  };

  ReplyEvents.prototype.finish = function () {
    if (!this.completed) {
      this.deliver({ type: "error", code: "stream_interrupted" });
      this.deliver({ type: "response_complete" });
    }
    return this.events;
  };

  /**
   * Return a new Idempotency-Key: crypto.randomUUID() where it exists (secure contexts),
   * else 128 bits of crypto.getRandomValues() as hex, else Math.random() in old browsers.
   */
  function newIdempotencyKey() {
    var cryptoApi = globalThis.crypto;
    if (cryptoApi && typeof cryptoApi.randomUUID === "function") {
      return cryptoApi.randomUUID();
    }
    if (cryptoApi && typeof cryptoApi.getRandomValues === "function") {
      var bytes = cryptoApi.getRandomValues(new Uint8Array(16));
      return Array.prototype.map
        .call(bytes, function (byte) {
          return (byte + 256).toString(16).slice(1);
        })
        .join("");
    }
    var parts = [Date.now().toString(36)];
    for (var index = 0; index < 4; index++) {
      parts.push(Math.random().toString(36).slice(2, 10));
    }
    return parts.join("-");
  }

  function readEventStream(reader, onEvent) {
    var decoder = new TextDecoder("utf-8");
    var parser = new SSEParser();
    var reply = new ReplyEvents(onEvent);

    function deliver(messages) {
      messages.forEach(function (message) {
        var event;
        try {
          event = JSON.parse(message.data);
        } catch (error) {
          return;
        }
        reply.deliver(event);
      });
    }

    function finish() {
      deliver(parser.push(decoder.decode()));
      deliver(parser.end());
      return { messageId: null, events: reply.finish() };
    }

    function pump() {
      return reader.read().then(
        function (chunk) {
          if (chunk.done) {
            return finish();
          }
          deliver(parser.push(decoder.decode(chunk.value, { stream: true })));
          return pump();
        },
        function () {
          return finish();
        }
      );
    }
    return pump();
  }

  var core = {
    LANGUAGES: LANGUAGES,
    THEME_PROPERTIES: THEME_PROPERTIES,
    TEXTS: TEXTS,
    ERROR_TEXTS: ERROR_TEXTS,
    ApiError: ApiError,
    ChatClient: ChatClient,
    SSEParser: SSEParser,
    addMessageText: addMessageText,
    cartSummary: cartSummary,
    replyAnnouncement: replyAnnouncement,
    addShopperMessage: addShopperMessage,
    assistantOf: assistantOf,
    cartChangedEvent: cartChangedEvent,
    errorInfo: errorInfo,
    formatPrice: formatPrice,
    formatUnitPrice: formatUnitPrice,
    initialState: initialState,
    isHttpUrl: isHttpUrl,
    newIdempotencyKey: newIdempotencyKey,
    localizeError: localizeError,
    reduceEvent: reduceEvent,
    restoreState: restoreState,
    storageKey: storageKey,
    validateConfig: validateConfig,
  };

  if (typeof module !== "undefined" && module.exports) {
    module.exports = core;
  }
  if (typeof window === "undefined" || typeof document === "undefined") {
    return;
  }

  // ---------------------------------------------------------------------------------------
  // DOM layer
  // ---------------------------------------------------------------------------------------

  var STYLES = [
    ":host { all: initial; position: fixed; bottom: 20px; z-index: var(--vz-z-index, 2147483000);",
    "  font-family: var(--vz-font-family, system-ui, sans-serif); font-size: var(--vz-font-size, 14px);",
    "  color: var(--vz-text-color, #1f2328); }",
    ":host(.vz-right) { right: 20px; } :host(.vz-left) { left: 20px; }",
    "* { box-sizing: border-box; }",
    ".vz-launcher { width: 56px; height: 56px; border: 0; border-radius: 50%; cursor: pointer;",
    "  background: var(--vz-primary-color, #0b6bcb); color: var(--vz-primary-text-color, #fff);",
    "  box-shadow: 0 4px 14px rgba(0,0,0,.25); display: flex; align-items: center;",
    "  justify-content: center; padding: 0; }",
    ".vz-launcher svg { width: 28px; height: 28px; fill: currentColor; }",
    ":host(.vz-left) .vz-panel { left: 0; } :host(.vz-right) .vz-panel { right: 0; }",
    ".vz-panel { position: absolute; bottom: 68px; width: min(380px, calc(100vw - 40px));",
    "  height: min(600px, calc(100vh - 110px)); display: flex; flex-direction: column;",
    // On phones 100vh includes the browser's toolbars, so dvh, the visible height, wins where known.
    "  height: min(600px, calc(100dvh - 110px));",
    "  background: var(--vz-background-color, #fff); border-radius: var(--vz-border-radius, 12px);",
    "  box-shadow: 0 8px 30px rgba(0,0,0,.25); overflow: hidden; }",
    ".vz-panel[hidden] { display: none; }",
    ".vz-header { display: flex; align-items: center; gap: 8px; padding: 10px 12px;",
    "  background: var(--vz-primary-color, #0b6bcb); color: var(--vz-primary-text-color, #fff); }",
    ".vz-avatar { width: 28px; height: 28px; border-radius: 50%; object-fit: cover; }",
    ".vz-title { font-weight: 600; flex: 1; min-width: 0; }",
    // The margin keeps the badge's focus ring off the title above it.
    ".vz-header .vz-badge { display: block; font-size: 11px; font-weight: 400; opacity: .9;",
    "  margin-top: 3px; padding: 0; text-align: start; text-decoration: underline dotted; }",
    ".vz-header .vz-badge:focus-visible { outline-offset: 1px; }",
    ".vz-header .vz-badge[hidden] { display: none; }",
    ".vz-badge-note { margin: 0; padding: 0 12px 8px; font-size: 12px;",
    "  background: var(--vz-primary-color, #0b6bcb); color: var(--vz-primary-text-color, #fff); }",
    ".vz-badge-note[hidden] { display: none; }",
    ".vz-header button { background: transparent; border: 0; color: inherit; cursor: pointer;",
    "  font-size: 16px; padding: 4px; }",
    ".vz-transcript { flex: 1; overflow-y: auto; padding: 12px; display: flex;",
    "  flex-direction: column; gap: 8px; }",
    // Without it a full transcript shrinks the scrolling row of cards to a sliver.
    ".vz-transcript > * { flex-shrink: 0; }",
    ".vz-message { max-width: 90%; padding: 8px 10px; border-radius: 10px; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; }",
    ".vz-user { align-self: flex-end; background: var(--vz-primary-color, #0b6bcb);",
    "  color: var(--vz-primary-text-color, #fff); }",
    // The bubble is a tint of the theme's text colour on its background, so a dark theme
    // keeps its contrast. Browsers without color-mix() keep the light grey.
    ".vz-assistant { align-self: flex-start; background: #f0f2f5;",
    "  background: color-mix(in srgb, var(--vz-text-color, #1f2328) 7%, var(--vz-background-color, #fff)); }",
    ".vz-status { font-style: italic; opacity: .7; }",
    ".vz-error { align-self: stretch; background: #fdecea; color: #8a1c12; }",
    ".vz-cards { display: flex; gap: 8px; overflow-x: auto; padding-bottom: 4px; }",
    // A narrow panel shows part of a third card, which shows that the row scrolls.
    ".vz-card { flex: 0 0 min(150px, 42%); border: 1px solid #d0d7de; border-radius: 8px; padding: 8px;",
    "  cursor: pointer; display: flex; flex-direction: column; gap: 4px;",
    "  background: var(--vz-background-color, #fff); }",
    ".vz-card img { width: 100%; height: 90px; object-fit: contain; }",
    // The add buttons of a row line up at the bottom of cards with names of any length.
    ".vz-card button { margin-top: auto; }",
    ".vz-card-name, .vz-card-brand, .vz-card-price, .vz-cart li { overflow-wrap: anywhere; }",
    ".vz-card-name { font-weight: 600; font-size: 13px; display: -webkit-box;",
    "  -webkit-box-orient: vertical; -webkit-line-clamp: 4; overflow: hidden; }",
    ".vz-card-brand { font-size: 12px; opacity: .7; display: -webkit-box;",
    "  -webkit-box-orient: vertical; -webkit-line-clamp: 2; overflow: hidden; }",
    // At .75 the default text colour keeps 6.9:1 on white; .6 fell under the 4.5:1 of WCAG.
    ".vz-old-price { text-decoration: line-through; opacity: .75; margin-right: 4px; }",
    ".vz-promo-price { color: #b3261e; font-weight: 600; }",
    ".vz-promo-label { background: #b3261e; color: #fff; border-radius: 4px; padding: 0 4px;",
    "  font-size: 11px; margin-left: 4px; display: inline-block; }",
    ".vz-live, .vz-visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden;",
    "  clip-path: inset(50%); white-space: nowrap; }",
    ".vz-card button, .vz-form button { border: 0; border-radius: 6px; cursor: pointer;",
    "  background: var(--vz-primary-color, #0b6bcb); color: var(--vz-primary-text-color, #fff);",
    "  padding: 6px 10px; font: inherit; }",
    "button:disabled, textarea:disabled { opacity: .5; cursor: default; }",
    // A focus ring in the primary colour, outside light controls. On the header's primary
    // background it takes the header's text colour. The transcript and the cards sit in
    // scrolling boxes that clip an outline outside them, so theirs is drawn inside.
    ":focus-visible { outline: 2px solid var(--vz-primary-color, #0b6bcb); outline-offset: 2px; }",
    ".vz-header :focus-visible { outline-color: currentColor; }",
    ".vz-transcript:focus-visible, .vz-card:focus-visible, .vz-cart ul:focus-visible {",
    "  outline-offset: -2px; }",
    ".vz-cart { border-top: 1px solid #d0d7de; padding: 6px 12px; font-size: 13px; }",
    ".vz-cart ul { margin: 4px 0; padding-left: 18px; max-height: 30vh; overflow-y: auto; }",
    ".vz-form { display: flex; align-items: flex-end; gap: 6px; padding: 8px;",
    "  border-top: 1px solid #d0d7de; }",
    // The input's border has a contrast of 4.5:1 on white, above the 3:1 that WCAG requires of
    // a control's edge.
    ".vz-form textarea { flex: 1; resize: none; font: inherit; padding: 6px; border-radius: 6px;",
    "  border: 1px solid #6e7781; max-height: 8em; overflow-y: auto; }",
    ".vz-form textarea::placeholder { color: #6e7781; opacity: 1; }",
    // Safari on iPhone zooms the page into a focused input whose text is under 16px.
    "@media (pointer: coarse) { .vz-form textarea { font-size: max(16px, 1em); } }",
    // A short window, such as a laptop's at 200% zoom or a phone held sideways, would leave
    // the transcript a line or two. The open panel then takes the window's full height and
    // covers the launcher, which the close button and Escape replace.
    "@media (max-height: 480px) {",
    "  .vz-panel { position: fixed; top: 0; bottom: 0; height: auto; width: min(380px, 100%);",
    "    border-radius: 0; }",
    "  .vz-panel:not([hidden]) + .vz-launcher { display: none; }",
    "}",
  ].join("\n");

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  /** Return an element for text from the server or the shopper, which may be right-to-left. */
  function textElement(tag, className, text) {
    var node = element(tag, className, text);
    node.dir = "auto";
    return node;
  }

  var SVG_NAMESPACE = "http://www.w3.org/2000/svg";

  /**
   * Return the launcher's chat bubble icon. It is drawn as SVG because an emoji needs a colour
   * emoji font, and a system without one shows an empty box in its place.
   */
  function chatIcon() {
    var svg = document.createElementNS(SVG_NAMESPACE, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG_NAMESPACE, "path");
    path.setAttribute(
      "d",
      "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"
    );
    svg.appendChild(path);
    return svg;
  }

  function safeCall(callback, argument) {
    if (!callback) {
      return;
    }
    try {
      callback(argument);
    } catch (error) {
      // A merchant's callback must not break the chat; the console keeps the trace.
      if (typeof console !== "undefined") {
        console.error("VIZOCHOKWidget callback failed", error);
      }
    }
  }

  /**
   * The chat widget: `new VIZOCHOKWidget(config).mount()`.
   *
   * The constructor validates the config and throws a TypeError naming an invalid property.
   */
  function VIZOCHOKWidget(config) {
    if (!(this instanceof VIZOCHOKWidget)) {
      throw new TypeError("VIZOCHOKWidget must be called with new");
    }
    var defaultApiBase = SCRIPT_ORIGIN || window.location.origin;
    this.config = validateConfig(config, defaultApiBase);
    this.texts = TEXTS[this.config.language];
    this.client = new ChatClient(this.config);
    this.state = initialState();
    this.conversationId = null;
    this.connected = false;
    this.messagesSent = 0;
    // {text, key, counted} of the message in flight, or of the last one that failed or whose
    // stream broke off. The same text sent again reuses the key, so the server replays a
    // reply it already made. `counted` is true once messagesSent counts the message, so a
    // replay does not count it again. sessionStorage keeps text and key for a page reload.
    this.retryMessage = null;
    this.host = null;
    this.nodes = null;
    this.refocusInput = false;
    this.cardRows = [];
    // The cards and add buttons of the transcript in document order, for _render to move
    // the focus to the rebuilt one.
    this.transcriptControls = [];
    this.cartOpen = false;
    this.badgeNoteOpen = false;
    // The open panel's window resize listener and its pending animation frame, or null.
    this.onResize = null;
    this.resizeFrame = null;
    this.cartUnknown = false;
    // The number of cart_changed events so far, so that a cart read back after one is dropped.
    this.cartChanges = 0;
    // The token of the stored conversation's read-back in flight, or null.
    this.restoring = null;
  }

  VIZOCHOKWidget.prototype._storage = function () {
    try {
      return window.sessionStorage;
    } catch (error) {
      // Storage is blocked (for example third-party cookies off): keep the id in memory.
      return null;
    }
  };

  VIZOCHOKWidget.prototype._storedValue = function (prefix) {
    var storage = this._storage();
    return storage ? storage.getItem(storageKey(this.config, prefix)) : null;
  };

  /** Keep a string under `prefix`, or forget it when `value` is null. */
  VIZOCHOKWidget.prototype._storeValue = function (prefix, value) {
    var storage = this._storage();
    if (!storage) {
      return;
    }
    try {
      if (value) {
        storage.setItem(storageKey(this.config, prefix), value);
      } else {
        storage.removeItem(storageKey(this.config, prefix));
      }
    } catch (error) {
      // A full or blocked storage: the value stays in memory and is gone after a reload.
    }
  };

  VIZOCHOKWidget.prototype._storedId = function () {
    return this._storedValue(STORAGE_PREFIX);
  };

  VIZOCHOKWidget.prototype._storeId = function (conversationId) {
    this._storeValue(STORAGE_PREFIX, conversationId);
  };

  /** Set retryMessage and store its text and key for a page reload. Null removes both. */
  VIZOCHOKWidget.prototype._setRetryMessage = function (retry) {
    this.retryMessage = retry;
    var stored = retry ? JSON.stringify({ text: retry.text, key: retry.key }) : null;
    this._storeValue(PENDING_PREFIX, stored);
  };

  /**
   * Return the retryMessage that an earlier page kept, or null. This page has not counted
   * it in messagesSent.
   */
  VIZOCHOKWidget.prototype._storedRetryMessage = function () {
    var value = this._storedValue(PENDING_PREFIX);
    var stored = null;
    try {
      stored = value ? JSON.parse(value) : null;
    } catch (error) {
      // Not written by this widget: ignored, like a missing value.
    }
    if (!stored || typeof stored.text !== "string" || typeof stored.key !== "string") {
      return null;
    }
    return { text: stored.text, key: stored.key, counted: false };
  };

  /** Insert the widget into the page (document.body by default) and restore a stored
   *  conversation. Returns the widget. */
  VIZOCHOKWidget.prototype.mount = function (target) {
    if (this.host) {
      return this;
    }
    var host = element("div");
    host.className = this.config.position === "bottom-left" ? "vz-left" : "vz-right";
    host.setAttribute("data-vizochok-widget", "");
    // The widget's own texts are in config.language, whatever the page's language is, so
    // screen readers pick the voice for that language.
    host.lang = this.config.language;
    var theme = this.config.theme;
    Object.keys(theme).forEach(function (name) {
      host.style.setProperty(THEME_PROPERTIES[name], theme[name]);
    });
    var shadow = host.attachShadow({ mode: "open" });
    if (typeof CSSStyleSheet === "function" && "adoptedStyleSheets" in shadow) {
      // A constructed style sheet needs no 'unsafe-inline' in the page's style-src.
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES);
      shadow.adoptedStyleSheets = [sheet];
    } else {
      shadow.appendChild(element("style", null, STYLES));
    }
    this.nodes = this._build(shadow);
    this.host = host;
    (target || document.body).appendChild(host);
    this._render();

    this.retryMessage = this._storedRetryMessage();
    var storedId = this._storedId();
    if (storedId) {
      this._restore(storedId);
    }
    return this;
  };

  /** Remove the widget from the page; the stored conversation stays for the next mount. */
  VIZOCHOKWidget.prototype.unmount = function () {
    if (!this.host) {
      return;
    }
    this._unwatchResize();
    this.host.remove();
    this.host = null;
    this.nodes = null;
    // A read-back still in flight belongs to this mount, so its result is dropped.
    this.restoring = null;
    this._disconnect("unmounted");
  };

  VIZOCHOKWidget.prototype.open = function () {
    if (!this.nodes) {
      return;
    }
    this.nodes.panel.hidden = false;
    this.nodes.launcher.setAttribute("aria-expanded", "true");
    // A transcript rendered while the panel was hidden, such as a restored one, had no
    // height to scroll, so it would open at its oldest message.
    this.nodes.transcript.scrollTop = this.nodes.transcript.scrollHeight;
    // A hidden input has no height to measure. On a phone the placeholder may take two lines,
    // which a one-row input would cut off behind a scroll bar.
    this._fitInput();
    this._watchResize();
    if (this.state.busy) {
      // The input is disabled during a reply or a restore, such as the one that mount()
      // starts, so it gets the focus when that ends.
      this.refocusInput = true;
    }
    this.nodes.input.focus();
  };

  VIZOCHOKWidget.prototype.close = function () {
    if (!this.nodes) {
      return;
    }
    var focusInPanel = this.nodes.panel.contains(this.host.shadowRoot.activeElement);
    this.nodes.panel.hidden = true;
    this.nodes.launcher.setAttribute("aria-expanded", "false");
    this._unwatchResize();
    if (focusInPanel) {
      // The focused control is hidden now: keyboard users continue from the launcher.
      this.nodes.launcher.focus();
    }
  };

  /**
   * End the conversation: call onSessionComplete with its summary and forget it, so that
   * the next message starts a new conversation. The header's "new conversation" button
   * calls it; a merchant may call it after checkout.
   */
  VIZOCHOKWidget.prototype.endSession = function () {
    if (this.state.busy) {
      // NOTE: a call during a reply or a restore is ignored, not queued, so a merchant that
      // ends the session after checkout must call it again once the reply is complete.
      return;
    }
    if (this.conversationId) {
      safeCall(this.config.callbacks.onSessionComplete, {
        conversationId: this.conversationId,
        storeId: this.config.storeId,
        userId: this.config.userId,
        assistant: this.state.assistant,
        messagesSent: this.messagesSent,
        cart: this.state.cart,
      });
      this._disconnect("session_complete");
    }
    this.conversationId = null;
    this.messagesSent = 0;
    this._setRetryMessage(null);
    this.cartUnknown = false;
    this.cartOpen = false;
    this._storeId(null);
    // The badge keeps naming the tenant's assistant; the next conversation's start updates it.
    this.state = Object.assign(initialState(), { assistant: this.state.assistant });
    this._render();
  };

  VIZOCHOKWidget.prototype._build = function (shadow) {
    var texts = this.texts;
    var launcher = element("button", "vz-launcher");
    launcher.appendChild(chatIcon());
    launcher.type = "button";
    launcher.setAttribute("aria-label", texts.open);
    launcher.setAttribute("aria-expanded", "false");

    var panel = element("section", "vz-panel");
    panel.id = "vz-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", this.config.botName);
    launcher.setAttribute("aria-controls", panel.id);

    var header = element("header", "vz-header");
    if (this.config.botAvatar) {
      var avatar = element("img", "vz-avatar");
      avatar.alt = "";
      avatar.src = this.config.botAvatar;
      header.appendChild(avatar);
    }
    var title = element("div", "vz-title", this.config.botName);
    // A tooltip reaches only mouse users. So the badge is a button that shows its explanation
    // under the header, and the explanation is the button's accessible description.
    var badge = element("button", "vz-badge", texts.offlineBadge);
    badge.type = "button";
    badge.title = texts.offlineBadgeTitle;
    badge.hidden = true;
    badge.setAttribute("aria-expanded", "false");
    badge.setAttribute("aria-controls", "vz-badge-note");
    badge.setAttribute("aria-describedby", "vz-badge-note");
    title.appendChild(badge);
    header.appendChild(title);
    var badgeNote = element("p", "vz-badge-note", texts.offlineBadgeTitle);
    badgeNote.id = "vz-badge-note";
    badgeNote.hidden = true;
    var restart = element("button", null, "↺");
    restart.type = "button";
    restart.title = texts.newConversation;
    restart.setAttribute("aria-label", texts.newConversation);
    header.appendChild(restart);
    var closeButton = element("button", null, "✕");
    closeButton.type = "button";
    closeButton.setAttribute("aria-label", texts.close);
    header.appendChild(closeButton);

    // The transcript is rebuilt on every event, so a live region on it would announce the
    // whole conversation again. A separate status region announces each finished reply.
    // The transcript takes the focus, so that keyboard users can scroll it with the arrow
    // and page keys.
    var transcript = element("div", "vz-transcript");
    transcript.setAttribute("role", "region");
    transcript.setAttribute("aria-label", texts.transcript);
    transcript.tabIndex = 0;
    // Outside the panel, so that a reply that ends after the shopper closed the panel is
    // announced too.
    var live = element("div", "vz-live");
    live.setAttribute("role", "status");
    live.setAttribute("aria-live", "polite");
    var cart = element("div", "vz-cart");
    var form = element("form", "vz-form");
    var input = element("textarea");
    input.rows = 1;
    input.placeholder = this.config.placeholder || texts.placeholder;
    input.setAttribute("aria-label", input.placeholder);
    var send = element("button", null, texts.send);
    send.type = "submit";
    form.appendChild(input);
    form.appendChild(send);

    panel.appendChild(header);
    panel.appendChild(badgeNote);
    panel.appendChild(transcript);
    panel.appendChild(cart);
    panel.appendChild(form);
    shadow.appendChild(panel);
    // The launcher follows the panel, as the CSS that hides it on short windows expects.
    shadow.appendChild(launcher);
    shadow.appendChild(live);

    var widget = this;
    launcher.addEventListener("click", function () {
      if (panel.hidden) {
        widget.open();
      } else {
        widget.close();
      }
    });
    closeButton.addEventListener("click", function () {
      widget.close();
    });
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !event.isComposing) {
        event.preventDefault();
        widget.close();
      }
    });
    badge.addEventListener("click", function () {
      widget.badgeNoteOpen = !widget.badgeNoteOpen;
      widget._render();
    });
    restart.addEventListener("click", function () {
      widget.endSession();
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      widget._sendFromPanel(input.value);
    });
    input.addEventListener("input", function () {
      widget._fitInput();
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        widget._sendFromPanel(input.value);
      }
    });
    return {
      launcher: launcher,
      panel: panel,
      badge: badge,
      badgeNote: badgeNote,
      restart: restart,
      transcript: transcript,
      live: live,
      cart: cart,
      input: input,
      send: send,
    };
  };

  /** Set the input's text and fit its height to it. */
  VIZOCHOKWidget.prototype._setInput = function (text) {
    this.nodes.input.value = text;
    this._fitInput();
  };

  /**
   * Fit the input's height to its text, so that a long message is visible as the shopper
   * types it or gets it back after an error. The CSS max-height limits the growth, and a
   * longer text scrolls inside the input.
   */
  VIZOCHOKWidget.prototype._fitInput = function () {
    var input = this.nodes.input;
    input.style.height = "auto";
    if (input.scrollHeight > 0) {
      // scrollHeight leaves out the 1px borders, which the border-box height includes.
      input.style.height = input.scrollHeight + 2 + "px";
    }
  };

  /**
   * Fit the input again when the window is resized or a phone is rotated, because the panel's
   * width follows the window's, and with it the number of lines the text or placeholder takes.
   * Runs while the panel is open, at most once per animation frame.
   */
  VIZOCHOKWidget.prototype._watchResize = function () {
    if (this.onResize) {
      return;
    }
    var widget = this;
    this.onResize = function () {
      if (widget.resizeFrame !== null) {
        return;
      }
      widget.resizeFrame = window.requestAnimationFrame(function () {
        widget.resizeFrame = null;
        widget._fitInput();
      });
    };
    window.addEventListener("resize", this.onResize);
  };

  VIZOCHOKWidget.prototype._unwatchResize = function () {
    if (!this.onResize) {
      return;
    }
    window.removeEventListener("resize", this.onResize);
    this.onResize = null;
    if (this.resizeFrame !== null) {
      window.cancelAnimationFrame(this.resizeFrame);
      this.resizeFrame = null;
    }
  };

  VIZOCHOKWidget.prototype._connect = function (details) {
    this.connected = true;
    safeCall(this.config.callbacks.onConnect, details);
  };

  VIZOCHOKWidget.prototype._disconnect = function (reason) {
    if (!this.connected) {
      return;
    }
    this.connected = false;
    safeCall(this.config.callbacks.onDisconnect, {
      conversationId: this.conversationId,
      reason: reason,
    });
  };

  VIZOCHOKWidget.prototype._reportError = function (info) {
    var error = Object.assign({}, info, { message: localizeError(info, this.config.language) });
    safeCall(this.config.callbacks.onError, error);
    return error;
  };

  VIZOCHOKWidget.prototype._restore = function (conversationId) {
    var widget = this;
    var restoring = {};
    this.restoring = restoring;
    this.conversationId = conversationId;
    // Busy until the transcript is back: send() ignores messages while busy, so none can
    // race the restore.
    this.state = Object.assign({}, this.state, { busy: true });
    this._render();
    this.client.getConversation(conversationId).then(
      function (conversation) {
        if (widget.restoring !== restoring) {
          return;
        }
        widget.restoring = null;
        widget.state = restoreState(conversation);
        widget.cartUnknown = false;
        var last = widget.state.entries[widget.state.entries.length - 1];
        var retry = widget.retryMessage;
        if (retry && last && last.role === "user" && last.text === retry.text) {
          // The page was reloaded before the message's reply arrived. Enter sends it again
          // with its key and gets the reply the server stored, or agent_busy while it runs.
          widget._setInput(retry.text);
        } else if (retry && lastShopperText(widget.state.entries) === retry.text) {
          // The server finished the reply before the reload, and the transcript shows it. The
          // same text sent now is a new request, and with the kept key the server would return the
          // stored reply and change nothing in the cart.
          widget._setRetryMessage(null);
        }
        widget._render();
        widget._connect({ conversationId: conversationId, restored: true });
      },
      function (error) {
        if (widget.restoring !== restoring) {
          return;
        }
        widget.restoring = null;
        widget.state = Object.assign({}, widget.state, { busy: false });
        if (error instanceof ApiError && error.status === 404) {
          // The conversation is gone; the next message starts a new one.
          widget.conversationId = null;
          widget._storeId(null);
          widget._render();
          return;
        }
        // The conversation is kept, so the next message continues it, but the shopper
        // learns why its earlier messages are missing.
        var info = widget._reportError(errorInfo(error));
        widget.state.entries = widget.state.entries.concat([{ role: "error", text: info.message }]);
        widget.cartUnknown = true;
        widget._announce(info.message);
        widget._render();
      }
    );
  };

  /** Return the text of the shopper's latest message in `entries`, or null. */
  function lastShopperText(entries) {
    for (var index = entries.length - 1; index >= 0; index--) {
      if (entries[index].role === "user") {
        return entries[index].text;
      }
    }
    return null;
  }

  VIZOCHOKWidget.prototype._ensureConversation = function () {
    if (this.conversationId) {
      return Promise.resolve(this.conversationId);
    }
    var widget = this;
    return this.client.startConversation().then(function (conversation) {
      widget.conversationId = conversation.conversation_id;
      widget._storeId(conversation.conversation_id);
      if (typeof conversation.assistant === "string") {
        // The badge that names the offline assistant shows before its first reply.
        widget.state = Object.assign({}, widget.state, { assistant: conversation.assistant });
        widget._render();
      }
      widget._connect({ conversationId: conversation.conversation_id, restored: false });
      return conversation.conversation_id;
    });
  };

  /** Send a shopper message; ignored while a reply is in progress or when blank. */
  VIZOCHOKWidget.prototype.send = function (text) {
    var message = typeof text === "string" ? text.trim() : "";
    if (!this.nodes || this.state.busy || message === "") {
      return;
    }
    var widget = this;
    var before = this.state;
    var retry = this.retryMessage;
    if (retry && retry.text !== message) {
      retry = null;
    }
    var key = retry ? retry.key : newIdempotencyKey();
    var counted = retry ? retry.counted : false;
    var starting = !this.conversationId;
    // Kept until the reply is complete, so that a page reload during the reply keeps the key.
    this._setRetryMessage({ text: message, key: key, counted: counted });
    var last = this.state.entries[this.state.entries.length - 1];
    if (retry && last && last.role === "user" && last.text === message) {
      // A reload left this message without a reply, so the transcript shows it already.
      this.state = Object.assign({}, this.state, { busy: true });
    } else {
      this.state = addShopperMessage(this.state, message);
    }
    this._setInput("");
    this._render();

    this._ensureConversation()
      .then(function (conversationId) {
        return widget.client.sendMessage(conversationId, message, {
          stream: true,
          idempotencyKey: key,
          onEvent: function (event) {
            widget._onEvent(event);
          },
        });
      })
      .then(
        function (reply) {
          if (!counted) {
            widget.messagesSent += 1;
          }
          if (reply.events.some(isStreamInterrupted)) {
            // The server may have finished the reply after the stream broke.
            widget._setRetryMessage({ text: message, key: key, counted: true });
          } else {
            widget._setRetryMessage(null);
            if (starting && !reply.events.some(isCartChanged)) {
              widget._readCart();
            }
          }
        },
        function (error) {
          widget._onSendFailed(error, before, message, { key: key, counted: counted });
        }
      );
  };

  function isStreamInterrupted(event) {
    return event.type === "error" && event.code === "stream_interrupted";
  }

  function isCartChanged(event) {
    return event.type === "cart_changed";
  }

  /**
   * Read the cart of the conversation after its first reply. That reply loads the merchant's
   * cart (cart GET) without a cart_changed event, so the summary would show a cart with
   * items as empty. A cart_changed event or a new conversation since then wins over it.
   */
  VIZOCHOKWidget.prototype._readCart = function () {
    var widget = this;
    var conversationId = this.conversationId;
    var changes = this.cartChanges;
    this.client.getConversation(conversationId, 1).then(
      function (conversation) {
        if (
          widget.conversationId !== conversationId ||
          widget.cartChanges !== changes ||
          !conversation.cart
        ) {
          return;
        }
        widget.state = Object.assign({}, widget.state, { cart: conversationCart(conversation) });
        widget.cartUnknown = false;
        widget._render();
      },
      function () {
        // NOTE: the summary keeps the cart it shows until a reply changes the cart.
      }
    );
  };

  /**
   * Send a message typed or picked in the panel. The input is disabled during the reply,
   * which takes the focus away, so the input gets it back when the reply ends.
   */
  VIZOCHOKWidget.prototype._sendFromPanel = function (text) {
    if (this.state.busy) {
      return;
    }
    this.refocusInput = true;
    this.send(text);
  };

  /**
   * Announce a text through the status region. Each text goes into a new element, so that
   * a text equal to the previous one, such as a second network_error in a row, is an
   * addition to the region and is announced again.
   */
  VIZOCHOKWidget.prototype._announce = function (text) {
    if (this.nodes && text) {
      this.nodes.live.textContent = "";
      this.nodes.live.appendChild(element("div", null, text));
    }
  };

  VIZOCHOKWidget.prototype._onEvent = function (event) {
    this.state = reduceEvent(this.state, event);
    var callbacks = this.config.callbacks;
    var interrupted = event.type === "error" && event.code === "stream_interrupted";
    if (this.nodes && !this.connected && !interrupted && event.type !== "response_complete") {
      // The server replies in the conversation again after a network_error or a failed
      // read-back. A reply's own events come before response_complete, which the widget
      // also adds after stream_interrupted.
      this._connect({ conversationId: this.conversationId, restored: false });
    }
    if (event.type === "status") {
      this._announce(this._statusText(event.code));
    } else if (event.type === "cart_changed") {
      this.cartChanges += 1;
      this.cartUnknown = false;
      safeCall(callbacks.onCartChanged, cartChangedEvent(event));
    } else if (event.type === "error") {
      this._reportError(event);
      if (event.code === "stream_interrupted") {
        this._disconnect("network_error");
      }
    } else if (event.type === "response_complete") {
      var reply = this.state.entries[this.state.entries.length - 1];
      if (reply && reply.role === "assistant") {
        this._announce(replyAnnouncement(reply, this.config.language));
      }
    }
    this._render();
  };

  VIZOCHOKWidget.prototype._onSendFailed = function (error, before, message, attempt) {
    // A rejected message is not stored by the server (docs/chat-api.md "Errors"), so the
    // transcript drops it and the input gets the text back for another try. After a
    // network_error, or an agent_busy while that message's turn still runs, the server may
    // have stored it. The same text sent again therefore keeps its key, and the server
    // replays the stored reply instead of processing the message twice.
    if (error instanceof ApiError && error.code === "idempotency_key_reused") {
      this._setRetryMessage(null);
    } else {
      this._setRetryMessage({ text: message, key: attempt.key, counted: attempt.counted });
    }
    var info = this._reportError(errorInfo(error));
    this.state = Object.assign({}, before, { busy: false, assistant: this.state.assistant });
    this.state.entries = before.entries.concat([{ role: "error", text: info.message }]);
    if (error instanceof ApiError && error.status === 404) {
      this._disconnect("not_found");
      this.conversationId = null;
      this._storeId(null);
    } else if (error instanceof ApiError && error.code === "network_error") {
      this._disconnect("network_error");
    }
    if (this.nodes) {
      this._setInput(message);
    }
    this._announce(info.message);
    this._render();
  };

  VIZOCHOKWidget.prototype._render = function () {
    if (!this.nodes) {
      return;
    }
    var nodes = this.nodes;
    var texts = this.texts;
    var widget = this;
    var transcript = nodes.transcript;
    var nearBottom =
      transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
    // The transcript is rebuilt below, so a row of cards that the shopper scrolled sideways
    // gets its offset back. Rows keep their order, because entries are only appended.
    var cardOffsets = this.cardRows.map(function (row) {
      return row.scrollLeft;
    });
    this.cardRows = [];
    var focusIndex = this._transcriptFocusIndex();
    this.transcriptControls = [];
    transcript.textContent = "";
    if (this.config.welcomeMessage) {
      transcript.appendChild(
        textElement("div", "vz-message vz-assistant", this.config.welcomeMessage)
      );
    }
    this.state.entries.forEach(function (entry) {
      if (entry.role === "user") {
        transcript.appendChild(textElement("div", "vz-message vz-user", entry.text));
      } else if (entry.role === "error") {
        transcript.appendChild(element("div", "vz-message vz-error", entry.text));
      } else {
        widget._renderReply(transcript, entry);
      }
    });
    var last = this.state.entries[this.state.entries.length - 1];
    if (this.state.busy && last && last.role === "user") {
      transcript.appendChild(
        element("div", "vz-message vz-assistant vz-status", texts.statusDefault)
      );
    }
    this.cardRows.forEach(function (row, index) {
      if (index < cardOffsets.length) {
        row.scrollLeft = cardOffsets[index];
      }
    });
    if (focusIndex !== null) {
      this._restoreTranscriptFocus(focusIndex);
    }
    if (nearBottom) {
      transcript.scrollTop = transcript.scrollHeight;
    }

    nodes.badge.hidden = this.state.assistant !== "offline";
    var noteShown = !nodes.badge.hidden && this.badgeNoteOpen;
    nodes.badge.setAttribute("aria-expanded", noteShown ? "true" : "false");
    nodes.badgeNote.hidden = !noteShown;
    nodes.input.disabled = this.state.busy;
    nodes.send.disabled = this.state.busy;
    nodes.restart.disabled = this.state.busy;
    this._renderCart();
    if (!this.state.busy && this.refocusInput) {
      this.refocusInput = false;
      if (!nodes.panel.hidden) {
        nodes.input.focus();
      }
    }
  };

  /**
   * Return the index in transcriptControls of the card or add button that has the focus, -1
   * for another element in the transcript, or null when the focus is not in the transcript.
   */
  VIZOCHOKWidget.prototype._transcriptFocusIndex = function () {
    var active = this.host.shadowRoot.activeElement;
    var transcript = this.nodes.transcript;
    if (!active || active === transcript || !transcript.contains(active)) {
      return null;
    }
    return this.transcriptControls.indexOf(active);
  };

  /**
   * Focus the rebuilt card or add button at `index`, because the rebuild removed the focused
   * one and the browser would move the focus to the page's body. Entries are only appended,
   * so the index names the same control. A disabled add button, as during a reply, passes
   * the focus to its card, and a control that is gone passes it to the transcript.
   */
  VIZOCHOKWidget.prototype._restoreTranscriptFocus = function (index) {
    var control = index >= 0 ? this.transcriptControls[index] : null;
    if (control && control.disabled) {
      control = control.parentNode;
    }
    (control || this.nodes.transcript).focus({ preventScroll: true });
  };

  VIZOCHOKWidget.prototype._renderReply = function (transcript, entry) {
    var widget = this;
    var language = this.config.language;
    entry.parts.forEach(function (part) {
      if (part.kind === "text") {
        transcript.appendChild(textElement("div", "vz-message vz-assistant", part.text));
      } else if (part.kind === "cards") {
        transcript.appendChild(widget._renderCards(part.items));
      } else if (part.kind === "error") {
        transcript.appendChild(
          element("div", "vz-message vz-error", localizeError(part.error, language))
        );
      }
    });
    if (!entry.complete) {
      var status = this._statusText(entry.status);
      transcript.appendChild(element("div", "vz-message vz-assistant vz-status", status));
    }
  };

  /** Return the progress line of a `status` code, or the generic one for another code. */
  VIZOCHOKWidget.prototype._statusText = function (code) {
    var known = Object.prototype.hasOwnProperty.call(this.texts.status, code);
    return known ? this.texts.status[code] : this.texts.statusDefault;
  };

  VIZOCHOKWidget.prototype._renderCards = function (items) {
    var widget = this;
    var texts = this.texts;
    var language = this.config.language;
    var list = element("div", "vz-cards");
    this.cardRows.push(list);
    items.forEach(function (product) {
      var card = element("div", "vz-card");
      card.tabIndex = 0;
      card.setAttribute("role", "group");
      card.setAttribute("aria-label", String(product.name));
      if (isHttpUrl(product.image_url)) {
        var image = element("img");
        image.alt = "";
        image.loading = "lazy";
        image.addEventListener("error", function () {
          // A broken image icon shows the shopper nothing useful, and the card is complete without it.
          image.remove();
        });
        image.src = product.image_url;
        card.appendChild(image);
      }
      var name = textElement("div", "vz-card-name", product.name);
      name.title = String(product.name);
      card.appendChild(name);
      if (product.brand) {
        card.appendChild(textElement("div", "vz-card-brand", product.brand));
      }
      var price = element("div", "vz-card-price");
      if (typeof product.promo_price === "number") {
        // A screen reader does not read the line through the old price, so hidden words name
        // each price.
        price.appendChild(element("span", "vz-visually-hidden", texts.oldPrice + " "));
        price.appendChild(
          element("span", "vz-old-price", formatPrice(product.price, language))
        );
        price.appendChild(element("span", "vz-visually-hidden", texts.newPrice + " "));
        price.appendChild(
          element(
            "span",
            "vz-promo-price",
            formatUnitPrice(product.promo_price, product.unit, language)
          )
        );
      } else {
        price.appendChild(element("span", null, formatUnitPrice(product.price, product.unit, language)));
      }
      if (product.promo_label) {
        price.appendChild(textElement("span", "vz-promo-label", product.promo_label));
      }
      card.appendChild(price);
      var add = element("button", null, texts.add);
      add.type = "button";
      // Every card has the same button text, so its accessible name says which product.
      add.setAttribute("aria-label", texts.add + ": " + product.name);
      add.disabled = widget.state.busy;
      add.addEventListener("click", function (event) {
        event.stopPropagation();
        widget._sendFromPanel(addMessageText(product, language));
      });
      card.appendChild(add);
      widget.transcriptControls.push(card, add);
      card.addEventListener("click", function () {
        safeCall(widget.config.callbacks.onProductClick, Object.assign({}, product));
      });
      card.addEventListener("keydown", function (event) {
        if (event.target === card && event.key === "Enter") {
          safeCall(widget.config.callbacks.onProductClick, Object.assign({}, product));
        }
      });
      list.appendChild(card);
    });
    return list;
  };

  VIZOCHOKWidget.prototype._renderCart = function () {
    var texts = this.texts;
    var language = this.config.language;
    var cart = this.state.cart;
    var box = this.nodes.cart;
    var widget = this;
    box.textContent = "";
    if (this.cartUnknown) {
      // A failed restore left the cart unknown: "empty" would be wrong.
      box.hidden = true;
      return;
    }
    if (!this.conversationId || cart.items.length === 0) {
      box.hidden = !this.conversationId;
      box.appendChild(element("div", null, texts.emptyCart));
      return;
    }
    box.hidden = false;
    var details = element("details");
    // The cart is rebuilt on every render, so it stays open once the shopper opened it.
    details.open = this.cartOpen;
    details.addEventListener("toggle", function () {
      widget.cartOpen = details.open;
    });
    details.appendChild(element("summary", null, cartSummary(cart, language)));
    var list = element("ul");
    // The list scrolls when it is taller than 30% of the window, and keyboard users scroll
    // it once it has the focus.
    list.tabIndex = 0;
    list.setAttribute("aria-label", texts.cart);
    cart.items.forEach(function (item) {
      var unitPrice = typeof item.promo_price === "number" ? item.promo_price : item.price;
      var line = element("li");
      // Only the name takes its own direction, so a right-to-left name does not reorder
      // the quantity and price after it.
      line.appendChild(textElement("span", null, item.name));
      line.appendChild(
        document.createTextNode(
          " × " + item.quantity + " — " + formatUnitPrice(unitPrice, item.unit, language)
        )
      );
      list.appendChild(line);
    });
    details.appendChild(list);
    box.appendChild(details);
  };

  VIZOCHOKWidget.core = core;
  window.VIZOCHOKWidget = VIZOCHOKWidget;
})();
