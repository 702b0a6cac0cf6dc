# Drives the bridge with Python's imaplib and smtplib, as a real client would: log in with a device password, list,
# select, fetch, STORE/MOVE/EXPUNGE, APPEND, then IDLE while sending a message to oneself through the SMTP bridge,
# and wait for the EXISTS that announces it. Run by TestPythonClients; arguments come from the environment.
import imaplib
import os
import smtplib
import ssl
import sys

host = "127.0.0.1"
ctx = ssl.create_default_context(cafile=os.environ["BRIDGE_CA"])
user, pw = os.environ["BRIDGE_USER"], os.environ["BRIDGE_PASSWORD"]


def check(typ, data, what):
    if typ != "OK":
        sys.exit(f"{what}: {typ} {data}")
    return data


M = imaplib.IMAP4_SSL(host, int(os.environ["BRIDGE_IMAPS"]), ssl_context=ctx)
check(*M.login(user, pw), "login")
boxes = check(*M.list(), "list")
if not any(b"Archive" in b for b in boxes):
    sys.exit(f"list: no Archive in {boxes}")
n = int(check(*M.select("INBOX"), "select")[0])
data = check(*M.fetch("1", "(UID RFC822)"), "fetch")
uid = data[0][0].split(b"UID ")[1].split()[0].decode()
check(*M.uid("STORE", uid, "+FLAGS", r"(\Flagged)"), "store")
check(*M.uid("MOVE", uid, "Archive"), "move")
check(*M.append("INBOX", None, None, b"Subject: appended by imaplib\r\n\r\nhi\r\n"), "append")
check(*M.store("1", "+FLAGS", r"(\Deleted)"), "store deleted")
check(*M.expunge(), "expunge")

# IDLE (RFC 2177) by hand: imaplib has it only from Python 3.14.
tag = M._new_tag()
M.send(tag + b" IDLE\r\n")
if not M.readline().startswith(b"+"):
    sys.exit("idle: no continuation")
S = smtplib.SMTP_SSL(host, int(os.environ["BRIDGE_SMTPS"]), context=ctx)
S.login(user, pw)
S.sendmail(user, [user], "From: %s\r\nTo: %s\r\nSubject: sent by smtplib\r\n\r\nhello\r\n" % (user, user))
S.quit()
while True:
    line = M.readline()
    if not line:
        sys.exit("idle: connection closed")
    if line.endswith(b"EXISTS\r\n"):
        break
M.send(b"DONE\r\n")
while True:
    line = M.readline()
    if line.startswith(tag):
        if b" OK" not in line:
            sys.exit(f"idle: {line}")
        break
M.logout()
print("ok")
