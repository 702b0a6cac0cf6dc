// Postern's only script. It enhances pages that work without it: keyboard shortcuts and a "New mail" banner fed by
// Server-Sent Events. No build step, no inline script (the CSP forbids it), no dependencies.
"use strict";
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.messages tbody tr[data-uid]"));
  var table = document.querySelector("table.messages[data-box]");
  var actForm = document.getElementById("act");
  var current = -1;

  // The message being read, from the reader's address /msg/{box}/{uid} (box is one escaped segment).
  var reading = (function () {
    var m = /^\/msg\/([^/]+)\/(\d+)$/.exec(location.pathname);
    if (!m) return null;
    try {
      return { box: decodeURIComponent(m[1]), uid: m[2] };
    } catch (e) {
      return null;
    }
  })();

  function mailboxURL(box) {
    return "/mail/" + box.split("/").map(encodeURIComponent).join("/");
  }

  function select(i) {
    if (!rows.length) return;
    i = Math.max(0, Math.min(rows.length - 1, i));
    if (current >= 0 && rows[current]) rows[current].classList.remove("current");
    current = i;
    var row = rows[i];
    row.classList.add("current");
    var link = row.querySelector("a.open");
    if (link) link.focus();
    row.scrollIntoView({ block: "nearest" });
  }

  // Keep the keyboard selection where the user clicked or tabbed.
  rows.forEach(function (row, i) {
    row.addEventListener("focusin", function () {
      if (current !== i) {
        if (current >= 0 && rows[current]) rows[current].classList.remove("current");
        current = i;
        row.classList.add("current");
      }
    });
  });

  // The conversation being read (conversation.html): its messages are <details>, one of them open. r, a and f act
  // on the message unfolded last; else on the newest one still open (at first the one the server opened: the first
  // unread, or the newest); else, with all folded, on the newest. So the reply goes to the message in view, which
  // need not be the conversation's latest, as with the Reply link inside each message.
  var conv = document.querySelector("article.conversation[data-box]");
  var convMsgs = conv ? Array.prototype.slice.call(conv.querySelectorAll("details.conv-msg[data-uid]")) : [];
  // The open attribute is watched rather than the "toggle" event: that event comes in a task of its own, which a key
  // pressed right after the click can overtake (Chromium runs input first); a mutation record is delivered before
  // the click's task ends.
  var unfolded = null;
  if (conv && window.MutationObserver) {
    new MutationObserver(function (records) {
      records.forEach(function (rec) {
        if (rec.target.open && rec.target.matches("details.conv-msg[data-uid]")) unfolded = rec.target;
      });
    }).observe(conv, { subtree: true, attributes: true, attributeFilter: ["open"] });
  }
  function convTarget() {
    var d = unfolded && unfolded.open ? unfolded : null;
    for (var i = convMsgs.length - 1; !d && i >= 0; i--) {
      if (convMsgs[i].open) d = convMsgs[i];
    }
    d = d || convMsgs[convMsgs.length - 1];
    return d ? { box: conv.dataset.box, uid: d.dataset.uid } : null;
  }

  // target is the message a shortcut acts on: the selected row, the message being read, or in a conversation the
  // message in view (convTarget).
  function target() {
    if (reading) return reading;
    if (conv) return convTarget();
    if (current >= 0 && table) return { box: table.dataset.box, uid: rows[current].dataset.uid };
    return null;
  }

  function compose(kind, extra) {
    var t = target();
    if (!t) return;
    location.href = "/compose?" + kind + "=" + encodeURIComponent(t.box + "/" + t.uid) + (extra || "");
  }

  function act(op) {
    if (actForm && table) {
      var boxes = actForm.querySelectorAll("input[name=uids]:checked");
      if (!boxes.length && current >= 0) {
        var cb = rows[current].querySelector("input[name=uids]");
        if (cb) cb.checked = true;
      }
      var button = actForm.querySelector("button[name=op][value=" + op + "]");
      if (!button || !actForm.querySelector("input[name=uids]:checked")) return;
      if (actForm.requestSubmit) actForm.requestSubmit(button);
      else button.click();
      return;
    }
    // On a message page without its own form, post one like the list's.
    var existing = document.querySelector("form[action='/act'] button[name=op][value=" + op + "]");
    if (existing) {
      existing.click();
      return;
    }
    if (!reading) return;
    var f = document.createElement("form");
    f.method = "post";
    f.action = "/act";
    var fields = { box: reading.box, uids: reading.uid, op: op, return_to: mailboxURL(reading.box) };
    Object.keys(fields).forEach(function (k) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = k;
      input.value = fields[k];
      f.appendChild(input);
    });
    document.body.appendChild(f);
    f.submit();
  }

  var help = document.getElementById("keys-help");

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    var el = e.target;
    // Typing in a field is typing, not a shortcut; checkboxes and buttons keep the shortcuts working.
    if (el && (el.isContentEditable || /^(TEXTAREA|SELECT)$/.test(el.tagName) ||
        (el.tagName === "INPUT" && !/^(checkbox|radio|submit|button)$/.test(el.type)))) {
      return;
    }
    if (help && help.open) return;
    var handled = true;
    switch (e.key) {
      case "j":
        select(current + 1);
        break;
      case "k":
        select(current < 0 ? 0 : current - 1);
        break;
      case "Enter":
        if (current >= 0 && document.activeElement === document.body) {
          var link = rows[current].querySelector("a.open");
          if (link) location.href = link.href;
        } else handled = false;
        break;
      case "x":
        if (current >= 0) {
          var cb = rows[current].querySelector("input[name=uids]");
          if (cb) cb.checked = !cb.checked;
        }
        break;
      case "r":
        compose("reply");
        break;
      case "a":
        compose("replyall");
        break;
      case "f":
        compose("forward");
        break;
      case "c":
        location.href = "/compose";
        break;
      case "e":
        act("archive");
        break;
      case "#":
        act("delete");
        break;
      case "z":
        var undo = document.getElementById("undo");
        if (undo) undo.click();
        else handled = false;
        break;
      case "/":
        var q = document.getElementById("q");
        if (q) {
          q.focus();
          q.select();
        } else handled = false;
        break;
      case "?":
        if (help && help.showModal) help.showModal();
        break;
      default:
        handled = false;
    }
    if (handled) e.preventDefault();
  });

  // Compose: autosave to Drafts a few seconds after typing stops and when the page is hidden, a warning before
  // leaving with unsaved text, and the picked files listed with name, size and Remove. Without the script the
  // "Save draft" button and the browser's own file picker do the same by hand.
  var cform = document.getElementById("compose-form");
  if (cform && window.fetch && window.FormData) {
    var draftUID = document.getElementById("draft-uid");
    var saveStatus = document.getElementById("autosave-status");
    var fields = ["to", "cc", "bcc", "subject", "body"].map(function (id) { return document.getElementById(id); });
    var snapshot = function () { return fields.map(function (f) { return f ? f.value : ""; }).join("\u0000"); };
    var saved = snapshot(), timer = null, saving = false, submitting = false;
    var dirty = function () { return snapshot() !== saved; };
    var say = function (text) { if (saveStatus) saveStatus.textContent = text; };
    var save = function (leaving) {
      if (saving || submitting || !dirty()) return;
      var fd = new FormData(cform);
      fd.delete("attach"); // new files go up with Send or Save draft; a background save takes the text only
      fd.set("autosave", "1");
      var snap = snapshot();
      saving = true;
      say("Saving draft…");
      fetch("/drafts", { method: "POST", body: fd, credentials: "same-origin", keepalive: !!leaving })
        .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
        .then(function (res) {
          saving = false;
          if (res.ok) {
            if (res.j.draft && draftUID) draftUID.value = res.j.draft;
            saved = snap;
            say("Draft saved at " + new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + ".");
          } else {
            say(res.j.problem || "The draft could not be saved.");
          }
        })
        .catch(function () {
          saving = false;
          say("The draft could not be saved (no connection?).");
        });
    };
    cform.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(save, 3000);
    });
    cform.addEventListener("submit", function () { submitting = true; });
    window.addEventListener("beforeunload", function (e) {
      if (!submitting && dirty()) {
        save(true);
        e.preventDefault();
        e.returnValue = "";
      }
    });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") save(true);
    });

    var picker = document.getElementById("attach"), picked = document.getElementById("picked");
    var human = function (n) {
      if (n >= 1048576) return (n / 1048576).toFixed(1) + " MB";
      if (n >= 1024) return Math.round(n / 1024) + " kB";
      return n + " B";
    };
    var listPicked = function () {
      picked.textContent = "";
      Array.prototype.forEach.call(picker.files, function (file, i) {
        var li = document.createElement("li");
        var name = document.createElement("bdi");
        name.textContent = file.name;
        var size = document.createElement("span");
        size.className = "muted";
        size.textContent = "(" + human(file.size) + ")";
        var rm = document.createElement("button");
        rm.type = "button";
        rm.textContent = "Remove";
        rm.setAttribute("aria-label", "Remove " + file.name);
        rm.addEventListener("click", function () {
          var dt = new DataTransfer();
          Array.prototype.forEach.call(picker.files, function (f, j) { if (j !== i) dt.items.add(f); });
          picker.files = dt.files;
          listPicked();
          picker.focus();
        });
        li.append(name, " ", size, " ", rm);
        picked.appendChild(li);
      });
      picked.hidden = picker.files.length === 0;
    };
    if (picker && picked && window.DataTransfer) {
      picker.addEventListener("change", listPicked);
      listPicked();
    }
  }

  // Live updates: the list page names its event stream; a change shows the banner. Reloading is left to the
  // user, so that a selection or a half-read list is never pulled away under them.
  var live = document.getElementById("live");
  if (live && live.dataset.events && "EventSource" in window) {
    var es = new EventSource(live.dataset.events);
    var title = document.title;
    es.addEventListener("mailbox", function () {
      live.hidden = false;
      document.title = "• " + title;
    });
    es.addEventListener("counts", showCounts);
    window.addEventListener("pagehide", function () {
      es.close();
    });
  }

  // ---- chrome (issue 15): side-bar unread counts from the live stream, and the shortcuts hint ----
  // The stream's "counts" event carries [{url, unseen}] for every folder (events.go); each side-bar link whose href
  // is that url gets its count, in the markup layout.html renders: <span class="count">N<span class="visually-hidden">
  // unread</span></span> (a generic span's aria-label is not announced; hidden text is).
  function showCounts(e) {
    var list;
    try {
      list = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    if (!Array.isArray(list)) return;
    var links = document.querySelectorAll("nav.folders a[href]");
    list.forEach(function (f) {
      for (var i = 0; i < links.length; i++) {
        var a = links[i];
        if (a.getAttribute("href") !== f.url) continue;
        var count = a.querySelector(".count");
        var n = Number(f.unseen) || 0;
        if (!n) {
          if (count) count.remove();
          continue;
        }
        if (!count) {
          count = document.createElement("span");
          count.className = "count";
          a.append(" ", count);
        }
        var hidden = document.createElement("span");
        hidden.className = "visually-hidden";
        hidden.textContent = " unread";
        count.textContent = String(n);
        count.appendChild(hidden);
      }
    });
  }

  // The hint names a shortcut only this script provides: hidden in the markup, shown once the script runs.
  Array.prototype.forEach.call(document.querySelectorAll(".keys-hint[hidden]"), function (el) {
    el.hidden = false;
  });
  // ---- end chrome ----
})();

// Message frames (message.html): the server states the height of a sandboxed HTML body, estimated at a few frame
// widths (data-heights="360 h 600 h 960 h"); this rescales it to the frame's actual width, now and when the window
// changes. It reads the width of Postern's own <iframe> element and nothing from the frame, which has an opaque
// origin and runs no script (web/message.go, sizeFrame). Between two stated widths it interpolates linearly, which
// leans high, as the estimate does: the cost of too tall is some space, of too short a scroll bar in the frame.
(function () {
  var frames = Array.prototype.slice.call(document.querySelectorAll("iframe.msg-html[data-heights]"));
  if (!frames.length) return;
  function fit(f) {
    var v = f.getAttribute("data-heights").split(" ").map(Number);
    var pts = [];
    for (var i = 0; i + 1 < v.length; i += 2) if (v[i] > 0 && v[i + 1] > 0) pts.push([v[i], v[i + 1]]);
    if (!pts.length) return;
    var w = f.clientWidth, h = pts[0][1];
    if (w >= pts[pts.length - 1][0]) h = pts[pts.length - 1][1];
    for (var j = 0; j + 1 < pts.length; j++) {
      var a = pts[j], b = pts[j + 1];
      if (w >= a[0] && w < b[0]) h = a[1] + (b[1] - a[1]) * (w - a[0]) / (b[0] - a[0]);
    }
    f.setAttribute("height", String(Math.ceil(h)));
  }
  function fitAll() { frames.forEach(fit); }
  fitAll();
  var pending = 0;
  window.addEventListener("resize", function () {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(fitAll);
  });
})();

// ---- Reader navigation (conversation.go): j/k follow the "Older"/"Newer" links of the reader and the conversation
// view. Registered in the capture phase so that the list's j/k (above) never sees keys meant for these pages; a list
// page has no such links and keeps its own j/k.
(function () {
  var older = document.getElementById("nav-older");
  var newer = document.getElementById("nav-newer");
  var keysHelp = document.getElementById("keys-help");
  if (!older && !newer) return;
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented || (keysHelp && keysHelp.open)) return;
    var el = e.target;
    if (el && (el.isContentEditable || /^(TEXTAREA|SELECT|INPUT)$/.test(el.tagName))) return;
    var link = e.key === "j" ? older : e.key === "k" ? newer : null;
    if (!link) return;
    e.preventDefault();
    location.href = link.href;
  }, true);
})();

// ---- Time zone (issue 15) ----
// The server shows times in the user's chosen zone, else in the zone this cookie names, else UTC (web/times.go).
// The browser's IANA name goes in the postern_tz cookie, written only when it changed; the server checks it against
// the tz database and ignores anything else. Without script, times stay in UTC or the zone chosen in Settings.
(function () {
  var tz;
  try {
    tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!tz || !/^[A-Za-z0-9\/_+-]{1,64}$/.test(tz)) return;
  var have = document.cookie.split("; ").filter(function (c) { return c.indexOf("postern_tz=") === 0; })[0];
  if (have === "postern_tz=" + tz) return;
  document.cookie = "postern_tz=" + tz + "; path=/; max-age=31536000; samesite=lax" +
    (location.protocol === "https:" ? "; secure" : "");
})();
