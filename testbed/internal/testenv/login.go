package testenv

import (
	"context"
	"html/template"
	"net/http"
)

const (
	loginPath         = "/login"
	loginRequestParam = "authRequestID"
)

// loginPage is the provider's sign-in form. It is plain HTML without
// JavaScript, so that a person in a browser and Browser in a test use it the
// same way. The first user's credentials are prefilled: one click signs in.
type loginPage struct {
	store    *storage
	prefill  User
	callback func(ctx context.Context, authRequestID string) string
}

var loginTemplate = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form id="login" method="post" action="` + loginPath + `">
<input type="hidden" name="` + loginRequestParam + `" value="{{.RequestID}}">
<p><label>Username <input type="text" name="username" value="{{.Username}}" autocomplete="username"></label></p>
<p><label>Password <input type="password" name="password" value="{{.Password}}" autocomplete="current-password"></label></p>
<p><button type="submit">Sign in</button></p>
</form>
</body>
</html>
`))

type loginView struct {
	RequestID, Username, Password, Error string
}

func (l *loginPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		id := r.URL.Query().Get(loginRequestParam)
		if id == "" {
			http.Error(w, "This page is reached from an application's sign-in; start there.", http.StatusBadRequest)
			return
		}
		l.render(w, http.StatusOK, loginView{RequestID: id, Username: l.prefill.Username, Password: l.prefill.Password})
	case http.MethodPost:
		l.signIn(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (l *loginPage) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "unreadable form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get(loginRequestParam)
	user, ok := l.store.authenticate(r.PostForm.Get("username"), r.PostForm.Get("password"))
	if !ok {
		l.render(w, http.StatusUnauthorized, loginView{
			RequestID: id,
			Username:  r.PostForm.Get("username"),
			Error:     "Wrong username or password.",
		})
		return
	}
	if err := l.store.completeLogin(id, user.Subject); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// 303: the browser follows a POST with a GET to op's callback, which
	// answers the client's redirect URI with the authorization code.
	http.Redirect(w, r, l.callback(r.Context(), id), http.StatusSeeOther)
}

func (l *loginPage) render(w http.ResponseWriter, status int, v loginView) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	loginTemplate.Execute(w, v)
}
