// Live updates for dashboard pages: a WebSocket per page tells us that something changed, and
// the page's live region is re-rendered by the server (?fragment=live), so the browser never
// has to know the shape of domain events.
(function () {
  "use strict";

  var MAX_RETRIES = 20;
  var FEED_LENGTH = 12;

  function socketUrl(path) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + path;
  }

  function setStatus(state, text) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.hidden = false;
    el.classList.toggle("is-live", state === "live");
    el.classList.toggle("is-down", state === "down");
    el.querySelector(".live-label").textContent = text;
  }

  function describe(event) {
    var parts = [event.kind || "event"];
    ["vin", "ecu_id", "state", "status", "outcome", "progress", "current_step", "error"].forEach(
      function (key) {
        var value = event[key];
        if (value === undefined || value === null || value === "") return;
        if (key === "progress") { if (value > 0) parts.push(value + " %"); return; }
        parts.push(String(value));
      }
    );
    return parts.join(" · ");
  }

  function addToFeed(event) {
    var feed = document.getElementById("live-feed");
    if (!feed) return;
    var empty = feed.querySelector(".empty");
    if (empty) empty.remove();
    var item = document.createElement("li");
    var time = document.createElement("time");
    // 24-hour UTC, as every time the server renders (not the browser's locale, e.g. 1:05 PM).
    var now = new Date().toISOString();
    time.dateTime = now;
    time.textContent = now.slice(11, 19);
    item.appendChild(time);
    item.appendChild(document.createTextNode(describe(event)));
    feed.insertBefore(item, feed.firstChild);
    while (feed.children.length > FEED_LENGTH) feed.removeChild(feed.lastChild);
  }

  function openDetails(region) {
    var open = {};
    region.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    return open;
  }

  function kpiValues(region) {
    var values = {};
    region.querySelectorAll("[data-kpi]").forEach(function (el) { values[el.dataset.kpi] = el.textContent; });
    return values;
  }

  var FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]";
  var FOCUS_KEYS = ["data-action", "data-vin", "name", "href"];

  // Where the keyboard focus is inside the region, in terms that survive a re-render: its id,
  // an identifying attribute, or else its position among the region's focusable elements.
  function focusedSpot(region) {
    var el = document.activeElement;
    if (!el || el === region || !region.contains(el)) return null;
    if (el.id) return { selector: "#" + CSS.escape(el.id) };
    for (var i = 0; i < FOCUS_KEYS.length; i++) {
      var key = FOCUS_KEYS[i];
      if (el.hasAttribute(key)) {
        return { selector: el.tagName.toLowerCase() + "[" + key + '="' + CSS.escape(el.getAttribute(key)) + '"]' };
      }
    }
    return { index: Array.prototype.indexOf.call(region.querySelectorAll(FOCUSABLE), el) };
  }

  function restoreFocus(region, spot) {
    if (!spot) return;
    var el = spot.selector ? region.querySelector(spot.selector) : region.querySelectorAll(FOCUSABLE)[spot.index];
    if (!el) {
      // The control is gone (a finished campaign has no Pause): keep the focus in the region
      // rather than letting it fall to <body>.
      region.setAttribute("tabindex", "-1");
      el = region;
    }
    el.focus({ preventScroll: true });
  }

  function LiveRegion(region, url) {
    this.region = region;
    this.url = url;
    this.pending = false;
    this.running = false;
    this.timer = null;
  }

  LiveRegion.prototype.schedule = function () {
    var self = this;
    if (self.timer) return;
    // Bursts of events (a wave of vehicles reporting) collapse into one refresh.
    self.timer = window.setTimeout(function () { self.timer = null; self.refresh(); }, 150);
  };

  LiveRegion.prototype.refresh = function () {
    var self = this;
    if (self.running) { self.pending = true; return; }
    self.running = true;
    fetch(self.url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) throw new Error("refresh failed: " + response.status);
        return response.text();
      })
      .then(function (html) {
        var open = openDetails(self.region);
        var before = kpiValues(self.region);
        var focus = focusedSpot(self.region);
        self.region.innerHTML = html;
        restoreFocus(self.region, focus);
        Object.keys(open).forEach(function (id) {
          var d = document.getElementById(id);
          if (d) d.open = open[id];
        });
        self.region.querySelectorAll("[data-kpi]").forEach(function (el) {
          if (before[el.dataset.kpi] !== undefined && before[el.dataset.kpi] !== el.textContent) {
            el.parentElement.classList.add("flash");
          }
        });
        self.region.dataset.refreshedAt = String(Date.now());
        document.dispatchEvent(new CustomEvent("live:refreshed"));
      })
      .catch(function (err) { console.warn(err); })
      .then(function () {
        self.running = false;
        if (self.pending) { self.pending = false; self.refresh(); }
      });
  };

  function connect(path, onEvent) {
    var retries = 0;
    function open() {
      setStatus("connecting", "connecting");
      var ws = new WebSocket(socketUrl(path));
      ws.onopen = function () { retries = 0; setStatus("live", "live"); };
      ws.onmessage = function (message) {
        var event;
        try { event = JSON.parse(message.data); } catch (e) { return; }
        if (event.kind === "hello") { document.body.dataset.liveGroup = event.group; return; }
        onEvent(event);
      };
      ws.onclose = function (close) {
        if (close.code >= 4400 && close.code < 4500) { setStatus("down", "not authorised"); return; }
        if (retries >= MAX_RETRIES) { setStatus("down", "offline"); return; }
        retries += 1;
        setStatus("down", "reconnecting");
        window.setTimeout(open, Math.min(30000, 500 * Math.pow(2, retries)));
      };
    }
    open();
  }

  function initUdsForm() {
    var form = document.getElementById("uds-form");
    if (!form) return;
    var service = form.querySelector("#id_service");
    var params = form.querySelector("#id_parameters");
    var preview = form.querySelector("#uds-preview");
    var help = form.querySelector("#param-help");
    var kind = form.querySelector("#param-kind");
    function render() {
      var option = service.options[service.selectedIndex];
      var hex = (option.dataset.sid + params.value.replace(/\s+/g, "")).toUpperCase();
      preview.value = hex.match(/.{1,2}/g).join(" ");
      help.textContent = option.dataset.help;
      kind.textContent = "(" + option.dataset.param + ")";
    }
    service.addEventListener("change", function () {
      params.value = service.options[service.selectedIndex].dataset.default;
      render();
    });
    params.addEventListener("input", render);
    render();
  }

  // Buttons that act at once and cannot be undone (Cancel) ask first. Delegated from the
  // document, so buttons a live refresh re-renders ask too.
  function initConfirm() {
    document.addEventListener("submit", function (event) {
      var button = event.submitter;
      if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initUdsForm();
    initConfirm();
    var body = document.body;
    var region = document.getElementById("live-region");
    if (!body.dataset.wsPath || !region || !("WebSocket" in window)) return;
    var live = new LiveRegion(region, body.dataset.liveUrl);
    connect(body.dataset.wsPath, function (event) {
      addToFeed(event);
      live.schedule();
    });
  });
})();
