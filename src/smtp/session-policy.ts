import type { Config } from '../config/schema.js';
import type { SessionPolicy } from './hooks.js';
import { rblDefaults } from './rbl-stage.js';

/**
 * A session's policy before anything is known of its client: the configured limits and RBL
 * settings; the client's address and Start() then change it.
 */
export function initialPolicy(config: Config): SessionPolicy {
  const limits = config.limits;
  return {
    validClient: false,
    localClient: false,
    authRequired: false,
    allowedUsers: '',
    forceDisconnect: false,
    useBATV: false,
    maxRecipientsLocal: limits.recipients,
    maxRecipientsIncoming: limits.recipients,
    maxMessagesLocal: limits.messagesPerSession,
    maxLineLength: limits.lineLength,
    addUserAddresses: false,
    ...rblDefaults(config),
  };
}
