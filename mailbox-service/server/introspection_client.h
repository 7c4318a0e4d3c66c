// The HTTPS client of the RFC 7662 introspection endpoint (introspection.h):
// Boost.Beast over OpenSSL, one connection per request.
#pragma once

#include "absl/status/statusor.h"
#include "mailbox-service/server/introspection.h"

namespace mailbox::server {

// Posts to `options.url` with the client credentials of `options` (HTTP Basic,
// RFC 6749 §2.3.1), checking the endpoint's certificate against options.ca_file
// (or the system's CAs) and its name against the URL's host; blocks the caller's
// thread up to options.timeout. InvalidArgument if the URL is not
// https://host[:port]/path.
absl::StatusOr<IntrospectionPost> MakeHttpsIntrospectionPost(const IntrospectionOptions& options);

}  // namespace mailbox::server
