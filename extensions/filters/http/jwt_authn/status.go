package jwtauthn

import "strings"

// status is jwt_verify_lib's Status: the outcome of verifying a request's
// tokens. Its String is the local reply body Envoy sends.
type status uint8

const (
	statusOK status = iota
	statusJwtMissed
	statusJwtNotYetValid
	statusJwtExpired
	statusJwtBadFormat
	statusJwtHeaderParseError
	statusJwtHeaderBadAlg
	statusJwtHeaderNotImplementedAlg
	statusJwtHeaderBadKid
	statusJwtPayloadParseError
	statusJwtSignatureParseError
	statusJwtUnknownIssuer
	statusJwtAudienceNotAllowed
	statusJwtVerificationFail
	statusJwksParseError
	statusJwksNoKeys
	statusJwksBadKeys
	statusJwksNoValidKeys
	statusJwksKidAlgMismatch
	statusJwksFetchFail
	numStatuses
)

// statusText is jwt_verify_lib's getStatusString
// (https://github.com/google/jwt_verify_lib/blob/master/src/status.cc).
var statusText = [numStatuses]string{
	statusOK:                         "OK",
	statusJwtMissed:                  "Jwt is missing",
	statusJwtNotYetValid:             "Jwt not yet valid",
	statusJwtExpired:                 "Jwt is expired",
	statusJwtBadFormat:               "Jwt is not in the form of Header.Payload.Signature",
	statusJwtHeaderParseError:        "Jwt header is an invalid Base64url input or an invalid JSON",
	statusJwtHeaderBadAlg:            "Jwt header [alg] field is not a string",
	statusJwtHeaderNotImplementedAlg: "Jwt header [alg] field value is invalid",
	statusJwtHeaderBadKid:            "Jwt header [kid] field is not a string",
	statusJwtPayloadParseError:       "Jwt payload is an invalid Base64 or an invalid JSON",
	statusJwtSignatureParseError:     "Jwt signature is an invalid Base64",
	statusJwtUnknownIssuer:           "Jwt issuer is not configured",
	statusJwtAudienceNotAllowed:      "Audiences in Jwt are not allowed",
	statusJwtVerificationFail:        "Jwt verification fails",
	statusJwksParseError:             "Jwks is an invalid JSON",
	statusJwksNoKeys:                 "Jwks does not have [keys] field",
	statusJwksBadKeys:                "[keys] in Jwks is not an array",
	statusJwksNoValidKeys:            "Jwks doesn't have any valid public key",
	statusJwksKidAlgMismatch:         "Jwks doesn't have key to match kid or alg from Jwt",
	statusJwksFetchFail:              "Jwks remote fetch is failed",
}

// statusDetails holds the response_code_details of each status, built once:
// Envoy's generateRcDetails, "jwt_authn_access_denied{" + the status string
// with every space replaced by "_" + "}" (filter.cc).
var statusDetails = func() (d [numStatuses]string) {
	for i, s := range statusText {
		d[i] = rcDetails(s)
	}
	return d
}()

// rcDetails is Envoy's generateRcDetails (StringUtil::replaceAllEmptySpace
// turns every whitespace character into "_").
func rcDetails(msg string) string {
	return "jwt_authn_access_denied{" + strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\v', '\f', '\r':
			return '_'
		}
		return r
	}, msg) + "}"
}

func (s status) String() string { return statusText[s] }
