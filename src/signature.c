/*-------------------------------------------------------------------------
 *
 * signature.c
 *	  Standard Webhooks signatures.
 *
 * A request to a target with a secret carries
 *		webhook-signature: v1,<base64 of HMAC-SHA256(key, id "." timestamp "." body)>
 * with one space-separated signature per secret, so that a receiver can
 * rotate its key: it accepts the request if any signature matches a key it
 * knows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hmac.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "utils/resowner.h"

#include "compat.h"
#include "signature.h"

/* pg_hmac registers with the current resource owner, which workers lack */
static ResourceOwner signature_owner = NULL;

static void
hmac_sha256(StringInfo key, const char *parts[], const size_t lens[],
			int nparts, uint8 *digest)
{
	ResourceOwner save = CurrentResourceOwner;
	pg_hmac_ctx *ctx;
	bool		ok;

	if (signature_owner == NULL)
		signature_owner = ResourceOwnerCreate(NULL, "outbox signatures");
	CurrentResourceOwner = signature_owner;

	ctx = pg_hmac_create(PG_SHA256);
	ok = ctx != NULL &&
		pg_hmac_init(ctx, (uint8 *) key->data, key->len) == 0;
	for (int i = 0; ok && i < nparts; i++)
		ok = pg_hmac_update(ctx, (const uint8 *) parts[i], lens[i]) == 0;
	ok = ok && pg_hmac_final(ctx, digest, PG_SHA256_DIGEST_LENGTH) == 0;
	if (!ok)
	{
		const char *err = ctx ? pg_hmac_error(ctx) : "out of memory";

		pg_hmac_free(ctx);
		CurrentResourceOwner = save;
		elog(ERROR, "could not compute a webhook signature: %s", err);
	}
	pg_hmac_free(ctx);
	CurrentResourceOwner = save;
}

/*
 * The value of the webhook-signature header for the given keys (a List of
 * StringInfo), palloc'd; NULL if there are no keys.
 */
char *
outbox_signature(List *keys, const char *webhook_id, const char *timestamp,
				 const char *body, size_t body_len)
{
	const char *parts[] = {webhook_id, ".", timestamp, ".", body};
	size_t		lens[] = {strlen(webhook_id), 1, strlen(timestamp), 1, body_len};
	StringInfoData out;
	ListCell   *lc;

	if (keys == NIL)
		return NULL;
	initStringInfo(&out);
	foreach(lc, keys)
	{
		uint8		digest[PG_SHA256_DIGEST_LENGTH];
		char		encoded[64];
		int			len;

		hmac_sha256(lfirst(lc), parts, lens, lengthof(parts), digest);
		len = outbox_b64_encode(digest, sizeof(digest), encoded,
								sizeof(encoded));
		if (len < 0)
			elog(ERROR, "could not encode a webhook signature");
		appendStringInfo(&out, "%sv1,%.*s", out.len > 0 ? " " : "", len,
						 encoded);
	}
	return out.data;
}
