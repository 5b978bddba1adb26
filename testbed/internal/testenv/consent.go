package testenv

import "net/url"

// PassConsentAndLogin plays the user on page: it answers the gateway's
// consent form (approve or deny) and signs in at the provider's login form,
// whichever of the two the page shows, and returns where the browser ends
// up. A consent remembered or a session still open at the provider skips
// that step.
func PassConsentAndLogin(b *Browser, page *Page, approve bool) (*Page, error) {
	return passConsentAndLogin(b, page, approve, nil)
}

// passConsentAndLogin is PassConsentAndLogin signing in with the form
// values signIn (username, password) in place of the prefilled ones.
func passConsentAndLogin(b *Browser, page *Page, approve bool, signIn url.Values) (*Page, error) {
	var err error
	if form := page.Form("consent"); form != nil {
		decision := "decision=deny"
		if approve {
			decision = "decision=approve"
		}
		if page, err = b.Submit(form, decision, nil); err != nil {
			return nil, err
		}
	}
	if form := page.Form("login"); form != nil {
		if page, err = b.Submit(form, "", signIn); err != nil {
			return nil, err
		}
	}
	return page, nil
}
