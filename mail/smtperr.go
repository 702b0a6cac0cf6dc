package mail

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/emersion/go-smtp"
)

// The outcomes of a submission that failed, besides ErrAuthFailed, ErrAuthUnavailable and ErrMaybeSent. Send's
// errors wrap one of them (test with errors.Is) inside a *SendError, which says more (errors.As): which recipient,
// and the server's reply for the log. They are classified by the reply code, the enhanced status code (RFC 3463)
// and the command that got it (RFC 5321 section 4.2), so that the caller never reads an SMTP reply itself.
var (
	// ErrRecipientRefused: the server refused a recipient permanently at RCPT TO (550 5.1.1 no such user, 551, 553
	// bad address, 5.7.1 relaying denied, …). SendError.Recipient names it.
	ErrRecipientRefused = errors.New("mail: smtp: recipient refused")
	// ErrRecipientFull: a recipient's mailbox is full (x.2.2, RFC 3463 section 3.3); Recipient names it when the
	// server said so at RCPT TO rather than after the data.
	ErrRecipientFull = errors.New("mail: smtp: recipient's mailbox is full")
	// ErrSenderRefused: the server refused the sender at MAIL FROM, e.g. Stalwart's 501 5.5.4 for an address the
	// account may not send from, or 553 5.7.1.
	ErrSenderRefused = errors.New("mail: smtp: sender refused")
	// ErrMessageTooBig: the message exceeds the server's size limit (552, x.3.4, x.2.3).
	ErrMessageTooBig = errors.New("mail: smtp: message too big")
	// ErrSubmitBusy: a temporary refusal (4xx): the same message may go through later. Recipient is set when it
	// came at RCPT TO.
	ErrSubmitBusy = errors.New("mail: smtp: temporarily refused")
	// ErrMessageRefused: the server refused the message permanently for another reason (policy, content).
	ErrMessageRefused = errors.New("mail: smtp: message refused")
	// ErrServerUnavailable: the server could not be reached or talked to (connection refused or reset, TLS
	// failure, no answer); nothing was submitted.
	ErrServerUnavailable = errors.New("mail: smtp: server unavailable")
)

// SendError is a failed submission: its Kind is one of the outcomes above, and errors.Is matches it.
type SendError struct {
	// Kind is ErrRecipientRefused, ErrRecipientFull, ErrSenderRefused, ErrMessageTooBig, ErrSubmitBusy,
	// ErrMessageRefused or ErrServerUnavailable.
	Kind error
	// Stage is the command that failed: "dial …", "ehlo", "mail from", "rcpt to", "data", "end of data".
	Stage string
	// Recipient is the address refused at RCPT TO, as the caller gave it; "" at other stages.
	Recipient string
	// Code and Enhanced are the server's reply (Enhanced is zero without RFC 2034 codes); 0 when it gave none.
	Code     int
	Enhanced [3]int
	// Reply is the server's text, for the log only: it is the server's wording, not the user's.
	Reply string
	err   error
}

func (e *SendError) Error() string {
	msg := "mail: smtp " + e.Stage
	if e.Recipient != "" {
		msg += " " + strconv.Quote(e.Recipient)
	}
	if e.Code != 0 {
		msg += fmt.Sprintf(": %d", e.Code)
		if e.Enhanced != [3]int{} {
			msg += fmt.Sprintf(" %d.%d.%d", e.Enhanced[0], e.Enhanced[1], e.Enhanced[2])
		}
		if e.Reply != "" {
			msg += " " + e.Reply
		}
		return msg
	}
	return msg + ": " + e.err.Error()
}

// Is makes errors.Is(err, e.Kind) true.
func (e *SendError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying error (a network error, or go-smtp's reply).
func (e *SendError) Unwrap() error { return e.err }

// sendError classifies err, which stage got, into a *SendError.
func sendError(stage, rcpt string, err error) error {
	e := &SendError{Stage: stage, err: err}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		e.Kind = ErrServerUnavailable
		return e
	}
	e.Code, e.Reply = se.Code, se.Message
	if se.EnhancedCode != smtp.NoEnhancedCode {
		e.Enhanced = [3]int(se.EnhancedCode)
	}
	sub := [2]int{e.Enhanced[1], e.Enhanced[2]}
	temporary := se.Code/100 == 4
	switch stage {
	case "rcpt to":
		e.Recipient = rcpt
		switch {
		case sub == [2]int{2, 2}: // mailbox full (RFC 3463 section 3.3)
			e.Kind = ErrRecipientFull
		case temporary:
			e.Kind = ErrSubmitBusy
		case sub == [2]int{3, 4}:
			e.Kind = ErrMessageTooBig
		default:
			e.Kind = ErrRecipientRefused
		}
	case "mail from":
		switch {
		case se.Code == 552 || sub == [2]int{3, 4}:
			e.Kind = ErrMessageTooBig
		case temporary:
			e.Kind = ErrSubmitBusy
		default:
			e.Kind = ErrSenderRefused
		}
	case "data", "end of data":
		switch {
		case sub == [2]int{2, 2}:
			e.Kind = ErrRecipientFull
		case se.Code == 552 || sub == [2]int{3, 4} || sub == [2]int{2, 3}:
			e.Kind = ErrMessageTooBig
		case temporary:
			e.Kind = ErrSubmitBusy
		default:
			e.Kind = ErrMessageRefused
		}
	default: // greeting, EHLO: the server will not talk to us now
		e.Kind = ErrServerUnavailable
	}
	return e
}
