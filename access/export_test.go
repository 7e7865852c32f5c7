package access

// SetPasswordParams makes u hash with p: tests use cheap parameters so
// that many logins stay fast. Production always uses
// DefaultPasswordParams.
func SetPasswordParams(u *Users, p PasswordParams) { u.setParams(p) }
